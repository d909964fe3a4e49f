"""Answer quality on held-out articles: the learned answerer, the old rule-based one, and a baseline.

    .venv/bin/python benchmarks/bench_answers.py [--embed-backend onnx-int8] [--json out.json]

Leave-articles-out cross-validation on ../shared/qa (benchmarks/qa_folds.py, the same folds and
candidates as train_answerer.py): the learned scorer and its calibrator are refitted per fold and
judge only held-out articles. In the same run, on the same retrieved passages:
- "rules": the extractive answerer this project shipped before the learned one (a frozen copy in
  benchmarks/rule_answerer.py, weights and threshold 0.445 as shipped);
- "baseline": the unit with the highest 0.7 x MiniLM cosine + 0.3 x BM25 (max-normalized), never
  abstaining.
One-unit answers; an answer is right when it contains an answer string (normalized). Questions:
answerable; SQuAD's adversarial unanswerable ones; and "elsewhere": questions asked against an
index of other articles (left out when their answer string occurs there).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import bench_common  # noqa: F401
import numpy as np
from bench_common import log
from qa_folds import SQUAD
from train_answerer import COL, collect, cross_validate, summarize

from assistant.answer_rules import RuleAnswerer
from assistant.evaluation.risk import risk_coverage
from assistant.evaluation.scoring import ItemResult
from assistant.settings import Settings
from assistant.text import normalize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SQUAD)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-articles", type=int)
    parser.add_argument("--max-questions", type=int)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-answers"))
    parser.add_argument("--precision", type=float, default=0.7)
    parser.add_argument("--embed-backend", default="onnx")
    parser.add_argument("--chunk-tokenizer", default=Settings.chunk_tokenizer,
                        help="what chunk sizes count: model word pieces or cl100k (default: shipped)")
    parser.add_argument("--chunk-tokens", type=int, default=Settings.chunk_tokens)
    parser.add_argument("--chunk-overlap", type=int, default=Settings.chunk_overlap)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = Settings(embed_backend=args.embed_backend, chunk_tokenizer=args.chunk_tokenizer,
                        chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    geometry = f"{args.embed_backend}-{args.chunk_tokenizer}{args.chunk_tokens}o{args.chunk_overlap}"
    rules = RuleAnswerer(0.445, 1)

    def hook(asked: Any, condensed: Any, retrieval: Any, candidates: Any) -> dict[str, Any]:
        out = rules.run(condensed, retrieval.passages, asked.assistant.retriever.stats)
        answers = [normalize(a) for a in asked.question.answers]
        right = not out.abstained and any(a and a in normalize(out.text) for a in answers)
        return {"rules_abstained": out.abstained, "rules_correct": right and asked.kind == "answerable"}

    rows = collect(args.data, args.folds, args.work.with_name(args.work.name + "-" + geometry), settings,
                   args.max_articles, args.max_questions, hook=hook)
    log(f"{len(rows)} rows; cross-validating")
    cv = cross_validate(rows, args.precision)
    learned = summarize(rows, cv["answered"], cv["labels"])
    rule_fig = summarize(rows, np.array([not r.extra["rules_abstained"] for r in rows]),
                         np.array([r.extra["rules_correct"] for r in rows]))
    base_correct = []
    for r in rows:
        if not len(r.y) or r.kind != "answerable":
            base_correct.append(False)
            continue
        bm = r.x[:, COL["bm25"]]
        pick = int(np.argmax(0.7 * r.x[:, COL["cos"]] + 0.3 * bm / (bm.max() or 1.0)))
        base_correct.append(bool(r.y[pick]))
    base_fig = summarize(rows, np.array([bool(len(r.y)) for r in rows]), np.array(base_correct))
    results = [ItemResult(r.id, r.question, r.kind == "answerable", False, bool(cv["labels"][i]) if r.kind == "answerable"
                          else None, None, 0, 0, float(cv["confidence"][i]), 0.0, "")
               for i, r in enumerate(rows)]
    thresholds = sorted(set(round(float(t), 4) for t in cv["thresholds"].values()))
    rc = risk_coverage(results, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, *thresholds])
    names = ("learned", "rules", "baseline")
    figs = (learned, rule_fig, base_fig)
    keys = ("answerable_accuracy", "false_abstention_rate", "answered_precision", "elsewhere_abstained",
            "adversarial_abstained")
    print(f"held-out articles, {args.folds} folds, {geometry}: "
          f"{learned['answerable']} answerable, {learned['elsewhere']} elsewhere, {learned['adversarial']} adversarial; "
          f"answer in the retrieved passages {learned['answer_in_passages']}")
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{f[key]:.3f}" for f in figs) + " |")
    print(f"\nlearned: fold thresholds {cv['thresholds']} (precision target {args.precision})")
    print(f"risk-coverage (learned, all {len(rows)} questions): AURC {rc['aurc']}, oracle {rc['oracle_aurc']}")
    print("| threshold | answered | coverage | risk |")
    print("|---|---|---|---|")
    for row in rc["table"]:
        print(f"| {row['threshold']:.3f} | {row['answered']} | {row['coverage']} | {row['risk']} |")
    if args.json:
        args.json.write_text(json.dumps({"learned": learned, "rules": rule_fig, "baseline": base_fig,
                                         "risk_coverage": {k: rc[k] for k in ("aurc", "oracle_aurc", "table")}},
                                        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
