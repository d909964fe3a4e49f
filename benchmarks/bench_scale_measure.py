"""Measuring for benchmarks/bench_scale.py: resident memory from /proc/self/status, percentiles,
and the reader child process (`bench_scale.py --measure`), which loads what the writer saved
the way a reader does and times searches one query at a time."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

STORE_MODEL = "synthetic-unit-vectors"


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (MB): VmRSS in all; RssAnon is the process's own memory, RssFile the
    memory-mapped file pages (page cache the kernel can drop and re-read)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb_and_reset() -> float:
    """The peak resident memory (VmHWM, MB) since the last reset, then reset it (clear_refs 5), so
    each build phase reports its own peak."""
    peak = rss_mb("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    return round(peak, 1)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Child process: load the saved index like a reader, then search one query at a time."""
    from assistant.index.flatfile import READ_FLAGS as _READ_FLAGS
    from assistant.index.vectors import search_vectors

    faiss.omp_set_num_threads(args.threads)
    queries = np.load(Path(args.work) / "queries.npy")
    truth = np.load(Path(args.work) / "truth.npy")
    before = rss_mb()
    t0 = time.perf_counter()
    index = faiss.read_index(str(Path(args.work) / "ann.faiss"), _READ_FLAGS)
    load_s = time.perf_counter() - t0
    after_load = rss_mb()
    t0 = time.perf_counter()
    flat = faiss.read_index(str(Path(args.work) / "vectors.faiss"), _READ_FLAGS)
    flat_load_s = time.perf_counter() - t0
    results: dict[str, object] = {"ann_load_seconds": round(load_s, 3), "rss_mb_before_load": round(before, 1),
                                  "rss_mb_after_ann_load": round(after_load, 1),
                                  "rss_anon_mb_after_ann_load": round(rss_mb("RssAnon"), 1),
                                  "flat_load_seconds": round(flat_load_s, 3),
                                  "rss_mb_after_flat_load": round(rss_mb(), 1), "by_ef": []}
    k = 10
    for ef in [int(e) for e in args.ef_search.split(",")]:
        for rerank in (False, True):
            if ef < 0:
                break
            for q in queries[:20]:  # warm-up: touch the pages a search touches
                search_vectors(flat, index, q, k, ef, rerank)
            latencies = []
            hits = 0
            for q, want in zip(queries, truth, strict=True):
                t0 = time.perf_counter()
                found = search_vectors(flat, index, q, k, ef, rerank)
                latencies.append((time.perf_counter() - t0) * 1000)
                hits += len({i for i, _ in found} & set(want[:k].tolist()))
            row = {"ef_search": ef, "rerank": rerank, "p50_ms": round(pct(latencies, 50), 3),
                   "p95_ms": round(pct(latencies, 95), 3), "recall@10": round(hits / (k * len(queries)), 4),
                   "rss_mb": round(rss_mb(), 1), "rss_anon_mb": round(rss_mb("RssAnon"), 1),
                   "rss_file_mb": round(rss_mb("RssFile"), 1)}
            results["by_ef"].append(row)  # type: ignore[union-attr]
            print(json.dumps(row), file=sys.stderr, flush=True)
    # Deep candidate lists, as the hybrid retriever asks for (Settings.candidates per retriever):
    # recall@10 of the first 10 and the time for the whole list.
    for depth in [int(d) for d in args.depths.split(",") if d]:
        latencies, hits = [], 0
        for q, want in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            found = search_vectors(flat, index, q, depth, args.default_ef, True)
            latencies.append((time.perf_counter() - t0) * 1000)
            hits += len({i for i, _ in found[:k]} & set(want[:k].tolist()))
        row = {"k": depth, "ef_search": max(args.default_ef, 2 * depth), "rerank": True,
               "p50_ms": round(pct(latencies, 50), 3), "p95_ms": round(pct(latencies, 95), 3),
               "recall@10": round(hits / (k * len(queries)), 4), "rss_mb": round(rss_mb(), 1),
               "rss_anon_mb": round(rss_mb("RssAnon"), 1)}
        results.setdefault("deep", []).append(row)  # type: ignore[union-attr]
        print(json.dumps(row), file=sys.stderr, flush=True)
    results["peak_rss_mb"] = round(rss_mb("VmHWM"), 1)  # ru_maxrss would carry the parent's peak over exec
    return results


class _QueryVectors:
    """Stands in for the embedder in `HybridRetriever`: a query's vector is looked up by its text."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.by_text = dict(zip(texts, vectors, strict=True))
        self.name, self.dim = STORE_MODEL, vectors.shape[1]

    def encode_query(self, text: str) -> np.ndarray:
        return self.by_text[text]


def measure_store(args: argparse.Namespace) -> dict[str, object]:
    """Child process: open the committed store like a reader and search through it."""
    from assistant.index import IndexStore
    from assistant.index.vectors import search_vectors
    from assistant.retrieve import HybridRetriever
    from assistant.settings import Settings

    faiss.omp_set_num_threads(args.threads)
    work = Path(args.work)
    queries = np.load(work / "queries.npy")
    truth = np.load(work / "truth.npy")
    query_texts = json.loads((work / "query_texts.json").read_text())
    settings = Settings(index_dir=work / "store")
    before = rss_mb()
    t0 = time.perf_counter()
    store = IndexStore.open(work / "store", STORE_MODEL, args.dim, settings=settings)
    open_s = time.perf_counter() - t0
    results: dict[str, object] = {"store_open_seconds": round(open_s, 3), "ann_kind": store.ann_kind,
                                  "rss_mb_before_open": round(before, 1), "rss_mb_after_open": round(rss_mb(), 1),
                                  "rss_anon_mb_after_open": round(rss_mb("RssAnon"), 1)}
    retriever = HybridRetriever(store, _QueryVectors(query_texts, queries), settings)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    lexical = retriever.lexical()
    results["bm25_load_seconds"] = round(time.perf_counter() - t0, 3)
    results["bm25_source"] = lexical.source
    results["rss_mb_after_bm25_load"] = round(rss_mb(), 1)
    results["rss_anon_mb_after_bm25_load"] = round(rss_mb("RssAnon"), 1)
    k = 10
    for q in queries[:20]:
        store.search(q, k)
    latencies, hits = [], 0
    for q, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        found = store.search(q, k)
        latencies.append((time.perf_counter() - t0) * 1000)
        hits += len({i for i, _ in found} & set(want[:k].tolist()))
    results["store_search"] = {"k": k, "ef_search": settings.hnsw_ef_search, "rerank": settings.ann_rerank,
                               "p50_ms": round(pct(latencies, 50), 3), "p95_ms": round(pct(latencies, 95), 3),
                               "recall@10": round(hits / (k * len(queries)), 4), "rss_mb": round(rss_mb(), 1),
                               "rss_anon_mb": round(rss_mb("RssAnon"), 1), "rss_file_mb": round(rss_mb("RssFile"), 1)}
    print(json.dumps(results["store_search"]), file=sys.stderr, flush=True)
    for ef in [int(e) for e in args.ef_search.split(",")]:
        for rerank in (False, True):
            latencies, hits = [], 0
            for q, want in zip(queries, truth, strict=True):
                t0 = time.perf_counter()
                found = search_vectors(store.vectors, store.ann, q, k, ef, rerank)
                latencies.append((time.perf_counter() - t0) * 1000)
                hits += len({i for i, _ in found} & set(want[:k].tolist()))
            row = {"ef_search": ef, "rerank": rerank, "p50_ms": round(pct(latencies, 50), 3),
                   "p95_ms": round(pct(latencies, 95), 3), "recall@10": round(hits / (k * len(queries)), 4)}
            results.setdefault("by_ef", []).append(row)  # type: ignore[union-attr]
            print(json.dumps(row), file=sys.stderr, flush=True)
    # The whole retrieval as the product runs it (query vector looked up, not encoded): dense
    # candidates from the store, BM25 from the saved index, fusion, chunk fetch from SQLite.
    for mode in ("dense", "bm25", "hybrid"):
        for text in query_texts[:10]:
            retriever.run(text, mode=mode)
        latencies, stages = [], {}
        for text in query_texts:
            t0 = time.perf_counter()
            result = retriever.run(text, mode=mode)
            latencies.append((time.perf_counter() - t0) * 1000)
            for key, value in result.timings.items():
                stages.setdefault(key, []).append(value)
        row = {"mode": mode, "candidates": settings.candidates, "top_k": settings.top_k,
               "p50_ms": round(pct(latencies, 50), 3), "p95_ms": round(pct(latencies, 95), 3),
               "stage_p50_ms": {key: round(pct(v, 50), 3) for key, v in stages.items()}, "rss_mb": round(rss_mb(), 1)}
        results.setdefault("retrieve", []).append(row)  # type: ignore[union-attr]
        print(json.dumps(row), file=sys.stderr, flush=True)
    results["peak_rss_mb"] = round(rss_mb("VmHWM"), 1)
    results["final_rss_anon_mb"] = round(rss_mb("RssAnon"), 1)
    store.close()
    return results
