"""Scale benchmark for the vector index: N synthetic unit vectors (default 1,000,000 x 384).

Builds the approximate index the store builds past `approx_threshold` (`build_ann`, the product's
own function: IndexIDMap over IndexHNSWSQ 8-bit or IndexHNSWFlat), writes it as the store does,
then in a fresh process loads it and the exact vectors file the way a reader does (memory-mapped,
`IO_FLAG_MMAP_IFC`) and measures load time, RSS, and for several efSearch values the latency
p50/p95 and recall@10 against exact search of `search_vectors` (the store's search: HNSW top
max(2k, k+20), re-scored exactly from the flat vectors; also without re-scoring), one query at a time. The exact (flat) index is timed on the same queries for comparison.

Data: unit vectors drawn around `--clusters` random centres (isotropic noise `--noise` 1.0: cosine
of a point to its centre about 0.7, between two points of a cluster about 0.5), so that neighbourhoods have structure like sentence
embeddings do; uniformly random vectors in 384 dimensions have no near neighbours to find.
Queries are fresh draws from the same distribution, not indexed points.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --n 1000000 --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, clusters, m)] + noise * rng.standard_normal((m, dim)).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory (MB): VmRSS in all; RssAnon is the process's own memory, RssFile the
    memory-mapped file pages (page cache the kernel can drop and re-read)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Child process: load the saved index like a reader, then search one query at a time."""
    from assistant.index.store import _READ_FLAGS, search_vectors

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=5000)
    parser.add_argument("--noise", type=float, default=1.0, help="noise scale around the centres")
    parser.add_argument("--kind", default="hnsw_sq8", choices=["hnsw_sq8", "hnsw"])
    parser.add_argument("--m", type=int, default=None, help="HNSW M (default: Settings.hnsw_m)")
    parser.add_argument("--ef-construction", type=int, default=None, help="default: Settings.hnsw_ef_construction")
    parser.add_argument("--ef-search", default="16,32,64,96,128,192")
    parser.add_argument("--threads", type=int, default=2, help="faiss threads for building and exact search")
    parser.add_argument("--work", default="/tmp/bench_scale", help="folder for the data and index files")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--depths", default="100,400", help="also time searches this deep (candidate lists)")
    parser.add_argument("--default-ef", type=int, default=None, help="efSearch for --depths (default: Settings)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.default_ef is None:
        from assistant.settings import Settings

        args.default_ef = Settings().hnsw_ef_search
    if args.measure:
        print(json.dumps(measure(args)))
        return 0

    from assistant.index.store import build_ann
    from assistant.settings import Settings

    defaults = Settings()
    m = args.m or defaults.hnsw_m
    efc = args.ef_construction or defaults.hnsw_ef_construction
    faiss.omp_set_num_threads(args.threads)
    report: dict[str, object] = {"n": args.n, "dim": args.dim, "kind": args.kind, "hnsw_m": m, "ef_construction": efc,
                                 "clusters": args.clusters, "noise": args.noise, "queries": args.queries, "threads": args.threads,
                                 "faiss": faiss.__version__, "cpu_count": os.cpu_count()}
    t0 = time.perf_counter()
    data = synthetic(args.n, args.dim, args.clusters, seed=1, noise=args.noise)
    queries = synthetic(args.queries, args.dim, args.clusters, seed=2, noise=args.noise)
    report["generate_seconds"] = round(time.perf_counter() - t0, 1)
    ids = np.arange(args.n, dtype=np.int64) * 7 + 3  # ids are not positions, as in the store
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(data)
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))  # the store's source-of-truth file
    exact.add_with_ids(data, ids)
    faiss.write_index(exact, str(work / "vectors.faiss"))
    del exact
    t0 = time.perf_counter()
    _s, truth_pos = flat.search(queries, 100)
    report["exact_batch_seconds"] = round(time.perf_counter() - t0, 2)
    truth = ids[truth_pos]
    faiss.omp_set_num_threads(1)
    lat = []
    for q in queries[:100]:
        t0 = time.perf_counter()
        flat.search(q.reshape(1, -1), 10)
        lat.append((time.perf_counter() - t0) * 1000)
    report["flat_single_query_ms_p50_1thread"] = round(pct(lat, 50), 2)
    faiss.omp_set_num_threads(args.threads)
    del flat
    np.save(work / "queries.npy", queries)
    np.save(work / "truth.npy", truth)
    print(f"data ready: {report}", file=sys.stderr, flush=True)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ann = build_ann(data, ids, args.kind, m, efc)
    report["build_seconds"] = round(time.perf_counter() - t0, 1)
    report["build_cpu_seconds"] = round(time.process_time() - cpu0, 1)
    t0 = time.perf_counter()
    faiss.write_index(ann, str(work / "ann.faiss"))
    report["write_seconds"] = round(time.perf_counter() - t0, 1)
    report["index_file_mb"] = round((work / "ann.faiss").stat().st_size / 2**20, 1)
    report["raw_float32_mb"] = round(data.nbytes / 2**20, 1)
    print(f"built: {report}", file=sys.stderr, flush=True)
    del ann, data

    child = subprocess.run([sys.executable, __file__, "--measure", "--work", str(work), "--ef-search", args.ef_search,
                            "--threads", "1", "--depths", args.depths, "--default-ef", str(args.default_ef)],
                           capture_output=True, text=True, check=True)
    sys.stderr.write(child.stderr)
    report["reader"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
