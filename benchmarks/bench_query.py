"""Query latency on SciFact: a plain fp32 baseline against `Assistant.search` / `Assistant.ask`.

Prints figures; it is not a test. Run from the project root:

    .venv/bin/python benchmarks/bench_query.py [--torch-index DIR] [--int8-index DIR] [--queries 200]

Systems, all with 1 compute thread (torch, onnxruntime, faiss: the server's setting), over the same
SciFact chunk index (default settings: 160-token chunks; the bench indexes that
`assistant bench retrieval` builds, fp32 and `--embed-backend onnx-int8`):

- `baseline`: sentence-transformers `encode([q])` (fp32) + faiss `IndexFlatIP` search (50) +
  bm25s search (50; stemmed, English stop words, k1 1.5, b 0.75) + RRF fusion (k 60) → top 5.
  Vectors and chunk texts are read from the torch index; nothing of `assistant.retrieve` is used.
- `int8_search` / `int8_ask`: `Assistant(embed_backend="onnx-int8")` on the int8 index:
  `search(q)` (hybrid, top 5) and `ask(q)` (extractive, top 8).
- `onnx_search` / `onnx_ask`: the same with the default embedder (fp32 ONNX Runtime) on the fp32 index.
- `torch_search` / `torch_ask`: the same with the fp32 torch embedder on the fp32 index.

Every query runs through every system before the next query (the order of systems rotates per
query), over --rounds passes, so load changes on a shared machine hit all systems alike.
Model loads, BM25 builds (`Assistant.warm_up`) and 3 warm-up queries are not timed. Reports
p50/p95/mean ms, median stage timings (`timings` of RetrievalResult / AskResult) and CPU/wall.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
from bench_common import DEFAULT_BEIR, log  # noqa: E402  (first: offline switches, project on sys.path)


def read_queries(folder: Path, limit: int) -> list[str]:
    """Test-split queries first (qrels order), like bench_spine."""
    rows = [json.loads(line) for line in open(folder / "queries.jsonl", encoding="utf-8") if line.strip()]
    qrels = folder / "qrels" / "test.tsv"
    order: dict[str, int] = {}
    if qrels.is_file():
        for line in qrels.read_text(encoding="utf-8").splitlines()[1:]:
            if line.strip():
                order.setdefault(line.split("\t")[0], len(order))
    rows.sort(key=lambda q: order.get(str(q["_id"]), len(order)))
    return [str(q["text"]) for q in rows[:limit]]


def summary(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"n": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2)}


class Baseline:
    """The plain pipeline: fp32 sentence-transformers + faiss flat + bm25s + RRF."""

    def __init__(self, index_dir: Path, candidates: int = 50, top_k: int = 5, rrf_k: int = 60) -> None:
        import bm25s
        import faiss
        import Stemmer
        from sentence_transformers import SentenceTransformer

        from assistant.embed import resolve_model_path
        from assistant.index import IndexStore

        self.candidates, self.top_k, self.rrf_k = candidates, top_k, rrf_k
        self.model = SentenceTransformer(str(resolve_model_path("all-MiniLM-L6-v2")), device="cpu")
        with IndexStore.open(index_dir, "all-MiniLM-L6-v2", 384) as store:
            chunks = list(store.iter_chunks())
            self.ids = np.array([c.id for c in chunks], dtype=np.int64)
            vectors = np.ascontiguousarray(store.vectors_of(self.ids.tolist()), dtype=np.float32)
        self.flat = faiss.IndexFlatIP(vectors.shape[1])
        self.flat.add(vectors)
        self.stemmer = Stemmer.Stemmer("english")
        self.bm25 = bm25s.BM25(k1=1.5, b=0.75)
        self.bm25.index(bm25s.tokenize([c.text for c in chunks], stopwords="en", stemmer=self.stemmer,
                                       show_progress=False), show_progress=False)
        self.size = len(chunks)

    def search(self, query: str) -> tuple[list[int], dict[str, float]]:
        import bm25s

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = self.model.encode([query], batch_size=1, normalize_embeddings=True, convert_to_numpy=True)
        t1 = time.perf_counter()
        _, dense = self.flat.search(np.asarray(vector, dtype=np.float32), self.candidates)
        t2 = time.perf_counter()
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, show_progress=False)
        sparse, _ = self.bm25.retrieve(tokens, k=min(self.candidates, self.size), show_progress=False, n_threads=1)
        t3 = time.perf_counter()
        fused: dict[int, float] = {}
        for ranking in (dense[0], sparse[0]):
            for rank, row in enumerate(ranking):
                if row >= 0:
                    chunk_id = int(self.ids[row])
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        top = sorted(fused, key=lambda i: -fused[i])[: self.top_k]
        t4 = time.perf_counter()
        timings.update(embed_query_ms=(t1 - t0) * 1000, dense_ms=(t2 - t1) * 1000, bm25_ms=(t3 - t2) * 1000,
                       fuse_ms=(t4 - t3) * 1000)
        return top, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--torch-index", type=Path, default=None,
                        help="fp32 index (default: the one `assistant bench retrieval` builds with the defaults)")
    parser.add_argument("--int8-index", type=Path, default=None,
                        help="int8 index (default: the one `assistant bench retrieval --embed-backend onnx-int8` builds)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", default="baseline,onnx_search,onnx_ask,int8_search,int8_ask,torch_search,torch_ask")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import faiss
    import torch

    from assistant.embed import Embedder
    from assistant.evaluation.bench import default_bench_dir
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    args.torch_index = args.torch_index or default_bench_dir("scifact", Settings())
    args.int8_index = args.int8_index or default_bench_dir("scifact", Settings(embed_backend="onnx-int8"))

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    queries = read_queries(args.beir, args.queries)
    systems = args.systems.split(",")
    report: dict[str, Any] = {"queries": len(queries), "rounds": args.rounds, "threads": 1,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                              "torch_index": str(args.torch_index), "int8_index": str(args.int8_index)}
    calls: dict[str, Callable[[str], dict[str, float]]] = {}
    t0 = time.perf_counter()
    if "baseline" in systems:
        baseline = Baseline(args.torch_index)
        calls["baseline"] = lambda q: baseline.search(q)[1]
        report["baseline_chunks"] = baseline.size
    if any(s.startswith("int8_") for s in systems):
        int8 = Assistant(Settings(index_dir=args.int8_index, embed_backend="onnx-int8"),
                         Embedder("all-MiniLM-L6-v2", "onnx-int8"))
        int8.warm_up()
        report["int8_workers"] = int8.embedder.model.workers
        calls["int8_search"] = lambda q: int8.search(q).timings
        calls["int8_ask"] = lambda q: int8.ask(q).timings
    if any(s.startswith("onnx_") for s in systems):
        onnx = Assistant(Settings(index_dir=args.torch_index, embed_backend="onnx"), Embedder("all-MiniLM-L6-v2", "onnx"))
        onnx.warm_up()
        calls["onnx_search"] = lambda q: onnx.search(q).timings
        calls["onnx_ask"] = lambda q: onnx.ask(q).timings
    if any(s.startswith("torch_") for s in systems):
        fp32 = Assistant(Settings(index_dir=args.torch_index, embed_backend="torch"), Embedder("all-MiniLM-L6-v2", "torch"))
        fp32.warm_up()
        calls["torch_search"] = lambda q: fp32.search(q).timings
        calls["torch_ask"] = lambda q: fp32.ask(q).timings
    report["setup_s"] = round(time.perf_counter() - t0, 1)
    log(f"set up in {report['setup_s']} s; {len(queries)} queries x {args.rounds} rounds ...")
    for q in queries[:3]:
        for name in systems:
            calls[name](q)

    ms: dict[str, list[float]] = {s: [] for s in systems}
    stages: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for r in range(args.rounds):
        for i, q in enumerate(queries):
            shift = (i + r) % len(systems)
            for name in systems[shift:] + systems[:shift]:
                start = time.perf_counter()
                timings = calls[name](q)
                ms[name].append((time.perf_counter() - start) * 1000)
                stages[name].append(timings)
        log(f"round {r + 1} done, load {os.getloadavg()[0]:.2f}")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    report["timed"] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_per_wall": round(cpu / wall, 2),
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    report["latency"] = {s: summary(v) for s, v in ms.items()}
    report["stage_median_ms"] = {}
    report["stage_p95_ms"] = {}
    for s, rows in stages.items():
        keys = sorted({k for row in rows for k in row})
        report["stage_median_ms"][s] = {k: round(statistics.median(row[k] for row in rows if k in row), 2) for k in keys}
        report["stage_p95_ms"][s] = {k: round(float(np.percentile([row[k] for row in rows if k in row], 95)), 2)
                                     for k in keys}
    if "baseline" in ms:
        base = report["latency"]["baseline"]["p50_ms"]
        report["p50_ratio_vs_baseline"] = {s: round(v["p50_ms"] / base, 3) for s, v in report["latency"].items()}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
