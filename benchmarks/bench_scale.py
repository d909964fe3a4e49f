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

The data is generated in batches of 100,000 from a seed (`synthetic_batches`), written or stored
batch by batch, and generated again for the exact ground truth: the benchmark never holds all N
vectors, so the writer's peak memory is the store's own.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --n 1000000 --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from bench_scale_data import BATCH, SyntheticTexts, exact_top, synthetic_batches, synthetic_labelled, synthetic_texts
from bench_scale_measure import STORE_MODEL, measure, measure_store, pct, peak_rss_mb_and_reset, rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def folder_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def build_store(args: argparse.Namespace, report: dict[str, object], m: int, efc: int) -> np.ndarray:
    """Write every vector and its text through `IndexStore.put_document` (SQLite rows, stored BM25
    terms, the exact vectors), batch by batch as generated, then one `commit()` (exact vectors
    file, BM25 build, HNSW build, all saved as the store saves them). Returns the chunk ids in
    the order of the data."""
    import shutil

    from assistant.index import DocumentRecord, IndexStore
    from assistant.settings import Settings

    folder = Path(args.work) / "store"
    shutil.rmtree(folder, ignore_errors=True)
    settings = Settings(index_dir=folder, index_type=args.kind, hnsw_m=m, hnsw_ef_construction=efc)
    per_doc = args.chunks_per_doc
    if BATCH % per_doc:
        raise SystemExit(f"--chunks-per-doc must divide {BATCH}")
    texts = SyntheticTexts(args.clusters, seed=3, topic_words=args.topic_words, background_words=args.background_words)
    report["text_words"] = args.topic_words + args.background_words
    timers: dict[str, float] = {}
    peaks: dict[str, float] = {}
    store = IndexStore.open(folder, STORE_MODEL, args.dim, writable=True, settings=settings)

    def timing(name: str) -> Callable[..., object]:
        method = getattr(store, name)

        def timed(*a: object) -> object:
            if name != "_write_index":  # called inside _commit_ann: its peak belongs to the ANN phase
                peaks["between"] = max(peaks.get("between", 0.0), peak_rss_mb_and_reset())
            t = time.perf_counter()
            try:
                return method(*a)
            finally:
                key = f"write:{str(a[1]).split('-')[0]}" if name == "_write_index" else name
                timers[key] = timers.get(key, 0.0) + time.perf_counter() - t
                if name != "_write_index":
                    peaks[name] = peak_rss_mb_and_reset()
        return timed

    for name in ("_commit_vectors", "_write_index", "_commit_ann", "_commit_bm25"):
        setattr(store, name, timing(name))
    cpu0, t0 = time.process_time(), time.perf_counter()
    now = time.time()
    start = 0
    for vectors, labels in synthetic_batches(args.n, args.dim, args.clusters, seed=1, noise=args.noise):
        batch_texts = texts.texts(labels)
        for first in range(0, len(vectors), per_doc):
            rows = [(j - first, 0, len(batch_texts[j]), 40, batch_texts[j]) for j in range(first, first + per_doc)]
            doc = start + first
            title = batch_texts[first].split(" ", 1)[0].capitalize()
            store.put_document(DocumentRecord(f"d{doc:08d}", f"synthetic:{doc}", title, f"h{doc}",
                                              sum(len(r[4]) for r in rows), len(rows), now), rows,
                               vectors[first : first + per_doc])
        start += len(vectors)
    report["store_put_seconds"] = round(time.perf_counter() - t0, 1)
    report["rss_mb_after_put"] = round(rss_mb(), 1)
    report["peak_rss_mb_put"] = peak_rss_mb_and_reset()
    t0 = time.perf_counter()
    store.commit()
    report["store_commit_seconds"] = round(time.perf_counter() - t0, 1)
    report["store_commit_parts_seconds"] = {"write_vectors": round(timers.get("_commit_vectors", 0.0), 1),
                                            "bm25_build_and_write": round(timers.get("_commit_bm25", 0.0), 1),
                                            "ann_build": round(timers.get("_commit_ann", 0.0) - timers.get("write:ann", 0.0), 1),
                                            "ann_write": round(timers.get("write:ann", 0.0), 1)}
    report["peak_rss_mb_commit_parts"] = {"write_vectors": peaks.get("_commit_vectors"),
                                          "bm25": peaks.get("_commit_bm25"), "ann": peaks.get("_commit_ann"),
                                          "between": peaks.get("between")}
    report["store_build_cpu_seconds"] = round(time.process_time() - cpu0, 1)
    ids = np.asarray([r[0] for r in store.db.execute("SELECT id FROM chunks ORDER BY doc_id, ord")], dtype=np.int64)
    meta = store._meta()
    store.close()
    report["ann_kind"] = meta.get("ann_kind")
    report["files_mb"] = {"vectors (exact, float32)": folder_mb(folder / meta["vectors_file"]),
                          "ann (HNSW)": folder_mb(folder / meta["ann_file"]) if meta.get("ann_file") else 0.0,
                          "bm25": folder_mb(folder / meta["bm25_dir"]), "index.sqlite": folder_mb(folder / "index.sqlite")}
    report["index_file_mb"] = report["files_mb"]["ann (HNSW)"]  # type: ignore[index]
    # The peak over the whole store build (put and commit peaks above, read before each reset).
    report["writer_peak_rss_mb"] = max(report["peak_rss_mb_put"], *(v for v in peaks.values()),  # type: ignore[type-var]
                                       peak_rss_mb_and_reset())
    report["writer_peak_rss_mb_from_rusage"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if len(ids) != args.n:
        raise SystemExit(f"store holds {len(ids)} chunks, expected {args.n}")
    return ids


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
    parser.add_argument("--store", action="store_true",
                        help="go through IndexStore: put_document per document (SQLite rows, BM25 terms), commit() "
                             "(HNSW and BM25 built and saved), then a reader opens the store and searches it")
    parser.add_argument("--chunks-per-doc", type=int, default=10, help="with --store")
    parser.add_argument("--topic-words", type=int, default=12, help="with --store: words per text from its topic")
    parser.add_argument("--background-words", type=int, default=28, help="with --store: other words per text")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.default_ef is None:
        from assistant.settings import Settings

        args.default_ef = Settings().hnsw_ef_search
    if args.measure:
        print(json.dumps(measure_store(args) if args.store else measure(args)))
        return 0

    from assistant.index.flatfile import READ_FLAGS as _READ_FLAGS
    from assistant.index.vectors import build_ann_from
    from assistant.settings import Settings

    defaults = Settings()
    m = args.m or defaults.hnsw_m
    efc = args.ef_construction or defaults.hnsw_ef_construction
    faiss.omp_set_num_threads(args.threads)
    report: dict[str, object] = {"n": args.n, "dim": args.dim, "kind": args.kind, "hnsw_m": m, "ef_construction": efc,
                                 "clusters": args.clusters, "noise": args.noise, "queries": args.queries, "threads": args.threads,
                                 "faiss": faiss.__version__, "cpu_count": os.cpu_count()}
    t0 = time.perf_counter()
    queries, query_labels = synthetic_labelled(args.queries, args.dim, args.clusters, seed=2, noise=args.noise)
    truth_pos = exact_top(queries, synthetic_batches(args.n, args.dim, args.clusters, seed=1, noise=args.noise), 100)
    report["generate_and_truth_seconds"] = round(time.perf_counter() - t0, 1)
    ids = np.arange(args.n, dtype=np.int64) * 7 + 3  # ids are not positions, as in the store
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.store:
        return run_store(args, report, truth_pos, queries, query_labels, m, efc)

    from assistant.index.flatfile import FlatFileWriter, iter_flat_file

    writer = FlatFileWriter(work / "vectors.faiss", args.dim)  # the store's source-of-truth file
    for start, (vectors, _labels) in zip(range(0, args.n, BATCH),
                                         synthetic_batches(args.n, args.dim, args.clusters, seed=1, noise=args.noise), strict=True):
        writer.append(vectors, ids[start : start + len(vectors)])
    writer.finish()
    truth = ids[truth_pos]
    faiss.omp_set_num_threads(1)
    flat = faiss.read_index(str(work / "vectors.faiss"), _READ_FLAGS)
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

    peak_rss_mb_and_reset()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ann = build_ann_from(lambda: iter_flat_file(work / "vectors.faiss"), args.n, args.dim, args.kind, m, efc)
    report["build_seconds"] = round(time.perf_counter() - t0, 1)
    report["build_cpu_seconds"] = round(time.process_time() - cpu0, 1)
    report["build_peak_rss_mb"] = peak_rss_mb_and_reset()
    t0 = time.perf_counter()
    faiss.write_index(ann, str(work / "ann.faiss"))
    report["write_seconds"] = round(time.perf_counter() - t0, 1)
    report["index_file_mb"] = round((work / "ann.faiss").stat().st_size / 2**20, 1)
    report["raw_float32_mb"] = round(args.n * args.dim * 4 / 2**20, 1)
    print(f"built: {report}", file=sys.stderr, flush=True)
    del ann

    child = subprocess.run([sys.executable, __file__, "--measure", "--work", str(work), "--ef-search", args.ef_search,
                            "--threads", "1", "--depths", args.depths, "--default-ef", str(args.default_ef)],
                           capture_output=True, text=True, check=True)
    sys.stderr.write(child.stderr)
    report["reader"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def run_store(args: argparse.Namespace, report: dict[str, object], truth_pos: np.ndarray,
              queries: np.ndarray, query_labels: np.ndarray, m: int, efc: int) -> int:
    work = Path(args.work)
    report["store"] = True
    report["chunks_per_doc"] = args.chunks_per_doc
    query_texts = synthetic_texts(query_labels, args.clusters, seed=4, topic_words=4, background_words=1)
    query_texts = [f"{t} q{i}" for i, t in enumerate(query_texts)]  # distinct texts
    (work / "query_texts.json").write_text(json.dumps(query_texts))
    np.save(work / "queries.npy", queries)
    report["peak_rss_mb_generate_and_truth"] = peak_rss_mb_and_reset()  # the benchmark's own, before the store
    print(f"data ready: {report}", file=sys.stderr, flush=True)
    ids = build_store(args, report, m, efc)
    np.save(work / "truth.npy", ids[truth_pos])
    report["raw_float32_mb"] = round(args.n * args.dim * 4 / 2**20, 1)
    print(f"built: {report}", file=sys.stderr, flush=True)
    child = subprocess.run([sys.executable, __file__, "--measure", "--store", "--work", str(work), "--ef-search",
                            args.ef_search, "--threads", "1", "--dim", str(args.dim)],
                           capture_output=True, text=True)
    sys.stderr.write(child.stderr)
    if child.returncode != 0:
        raise SystemExit(f"reader failed ({child.returncode})")
    report["reader"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
