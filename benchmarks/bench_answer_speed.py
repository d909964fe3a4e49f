"""What the learned answerer costs: ingest with and without unit vectors, and `ask` latency.

    .venv/bin/python benchmarks/bench_answer_speed.py [--docs 5183] [--queries 200] [--work /tmp/bench-answer-speed]

On BEIR SciFact (../shared/benchmarks/scifact): the same documents are ingested twice, into fresh
indexes, alternating which goes first per round: once as today (unit vectors pooled from each
chunk's forward pass and stored) and once with units switched off (the ingest before them). Then,
on the full index with units, `Assistant.ask` (extractive, top 8, 1 thread) for the first
--queries test queries with each answerer ("rules" and "learned"); model loads, BM25 and 3
warm-up questions are not timed. Prints chunks/s, CPU seconds, and p50/p95 ms per answerer with
the answer stage's own median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import bench_common  # noqa: F401
from bench_common import DEFAULT_BEIR, log

from assistant.answer import make_answerer
from assistant.embed import Embedder
from assistant.ingest import Ingestor, TextItem
from assistant.pipeline import Assistant
from assistant.settings import Settings


class _WithoutUnits(Embedder):
    """The default embedder with unit vectors switched off: ingest as it was before them."""

    @property
    def supports_units(self) -> bool:
        return False


def read_corpus(folder: Path, limit: int) -> list[TextItem]:
    items = []
    with open(folder / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            items.append(TextItem(f"scifact/{raw['_id']}", raw.get("text", ""), raw.get("title", "")))
            if len(items) >= limit:
                break
    return [i for i in items if i.text.strip()]


def read_queries(folder: Path, limit: int) -> list[str]:
    wanted = set()
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as handle:
        for line in handle:
            qid = line.split("\t")[0]
            if qid.isdigit():
                wanted.add(qid)
    out = []
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            if raw["_id"] in wanted:
                out.append(raw["text"])
    return out[:limit]


def ingest(items: list[TextItem], folder: Path, embedder: Embedder) -> dict[str, float]:
    shutil.rmtree(folder, ignore_errors=True)
    settings = Settings(index_dir=folder)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = Ingestor(settings, embedder=embedder).ingest_texts(items, progress=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    chunks = sum(r.chunks for r in report.results)
    return {"chunks": chunks, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "chunks_per_s": round(chunks / wall, 2), "chunks_per_cpu_s": round(chunks / cpu, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--docs", type=int, default=5183)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-answer-speed"))
    args = parser.parse_args()
    items = read_corpus(args.beir, args.docs)
    with_units, without = Embedder(), _WithoutUnits()
    with_units.encode(["warm up"])
    without.encode(["warm up"])
    runs: dict[str, list[dict[str, float]]] = {"with_units": [], "without_units": []}
    for r in range(args.rounds):
        order = [("with_units", with_units), ("without_units", without)]
        for name, embedder in order if r % 2 == 0 else order[::-1]:
            log(f"round {r}: ingest {len(items)} docs, {name}")
            runs[name].append(ingest(items, args.work / name, embedder))
            log(f"  {runs[name][-1]}")
    queries = read_queries(args.beir, args.queries)
    latency: dict[str, dict[str, float]] = {}
    for answerer in ("rules", "learned"):
        settings = Settings(index_dir=args.work / "with_units", answerer=answerer)
        with Assistant(settings, with_units) as assistant:
            assistant.answerer = make_answerer(settings, assistant.store, with_units)
            assistant.warm_up()
            for q in queries[:3]:
                assistant.ask(q)
            totals, stages = [], []
            for q in queries:
                t0 = time.perf_counter()
                result = assistant.ask(q)
                totals.append((time.perf_counter() - t0) * 1000)
                stages.append(result.timings.get("answer_ms", 0.0))
        totals.sort()
        latency[answerer] = {"p50_ms": round(statistics.median(totals), 1),
                             "p95_ms": round(totals[int(0.95 * (len(totals) - 1))], 1),
                             "answer_stage_p50_ms": round(statistics.median(stages), 2)}
        log(f"ask with {answerer}: {latency[answerer]}")
    ratio = statistics.median(r["chunks_per_cpu_s"] for r in runs["with_units"]) / statistics.median(
        r["chunks_per_cpu_s"] for r in runs["without_units"])
    print(json.dumps({"docs": len(items), "ingest": runs, "ingest_ratio_cpu": round(ratio, 3), "ask": latency},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
