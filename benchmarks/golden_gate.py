"""Walk a tuning ranking (best on the training split first) and check each configuration against a
golden set: the first one whose golden scores are nowhere worse than a reference's is the one to ship.

One process, one model, one index of the golden corpus: a configuration's golden eval takes well
under a second (BM25 parameters that differ from the index's are applied by rebuilding BM25 in
memory, as the retriever does).

    .venv/bin/assistant bench retrieval --beir ../shared/benchmarks/scifact --tune --json /tmp/tune.json
    ASSISTANT_FUSION=rrf ASSISTANT_CANDIDATES=50 ...  # the reference: defaults unless set
    .venv/bin/python benchmarks/golden_gate.py /tmp/tune.json ../shared/corpus/news \\
        ../shared/golden/news_golden.jsonl --first 1 --last 250
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from assistant.embed import Embedder  # noqa: E402
from assistant.evaluation.bench import TUNED_FIELDS  # noqa: E402
from assistant.evaluation.golden import read_golden  # noqa: E402
from assistant.evaluation.run import evaluate  # noqa: E402
from assistant.ingest import Ingestor  # noqa: E402
from assistant.pipeline import Assistant  # noqa: E402
from assistant.settings import Settings  # noqa: E402

HIGHER_IS_BETTER = ["correct", "evidence_hit_at_k", "citation_precision", "items_with_good_citation",
                    "abstained_unanswerable"]


def ranking_from_report(path: Path) -> list[dict[str, Any]]:
    """Distinct configurations of a `bench retrieval --tune --json` report, best train nDCG@10 first."""
    reports = json.loads(path.read_text())
    tuning = next(r["tuning"] for r in reports if r.get("tuning"))
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for trial in tuning["trials"]:
        seen.setdefault(tuple(trial[k] for k in TUNED_FIELDS), trial)
    return sorted(seen.values(), key=lambda t: -t["ndcg@10"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tune_json", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("golden", type=Path)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--last", type=int, default=250)
    parser.add_argument("--stop-at-pass", action="store_true", help="stop at the first passing configuration")
    parser.add_argument("--reference-embed-context", choices=["title", "none"], default=None,
                        help="score the reference on its own index built with this embed_context (e.g. the "
                             "shipped defaults before a change of embed_context); default: the same index")
    args = parser.parse_args()
    ranking = ranking_from_report(args.tune_json)
    embedder = Embedder(Settings().model)
    folder = tempfile.mkdtemp(prefix="golden-gate-")
    Ingestor(Settings(index_dir=Path(folder)), embedder).ingest_paths([args.corpus], progress=False)
    items, problems = read_golden(args.golden)
    if problems:
        print(f"golden file problems: {problems[:3]}", file=sys.stderr)

    def totals(settings: Settings) -> dict[str, Any]:
        with Assistant(settings, embedder) as bot:
            return evaluate(bot, items).totals

    reference_settings = Settings.from_env(index_dir=Path(folder))  # the defaults, or ASSISTANT_* from the environment
    if args.reference_embed_context:
        reference_settings = reference_settings.override(index_dir=Path(folder) / "reference",
                                                         embed_context=args.reference_embed_context)
        Ingestor(reference_settings, embedder).ingest_paths([args.corpus], progress=False)
    reference = totals(reference_settings)
    print("reference:", {k: reference[k] for k in HIGHER_IS_BETTER + ["false_abstentions", "citations"]})
    for rank in range(args.first, min(args.last, len(ranking)) + 1):
        config = ranking[rank - 1]
        t = totals(Settings(index_dir=Path(folder), **{k: config[k] for k in TUNED_FIELDS}))
        worse = [k for k in HIGHER_IS_BETTER if t[k] < reference[k] - 1e-9]
        if t["false_abstentions"] > reference["false_abstentions"]:
            worse.append("false_abstentions")
        print(f"#{rank} train {config['ndcg@10']:.4f} " + " ".join(f"{k}={config[k]}" for k in TUNED_FIELDS)
              + f" | correct {t['correct']} precision {t['citation_precision']:.3f} ({t['citations']}) "
              f"abstained {t['abstained_unanswerable']} false-abst {t['false_abstentions']} -> "
              + ("FAIL " + ",".join(worse) if worse else "PASS"), flush=True)
        if args.stop_at_pass and not worse:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
