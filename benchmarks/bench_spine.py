"""Spine benchmark on BEIR SciFact: ingest throughput vs raw model encode, and query latency.

Prints figures; it is not a test. Run from the project root, e.g.

    .venv/bin/python benchmarks/bench_spine.py                       # full SciFact (slow: minutes)
    .venv/bin/python benchmarks/bench_spine.py --docs 300 --queries 30
    .venv/bin/python benchmarks/bench_spine.py --index-dir /tmp/sf --queries 200   # reuse / keep an index

What it measures, in one warm process (model load and start-up costs are timed separately and
excluded from every throughput and latency figure):

1. Ingestion: `Ingestor.ingest_texts` of the first --docs SciFact documents into a fresh index
   (source "scifact:<_id>", text title + blank line + abstract): chunks, seconds, chunks/s.
2. Raw encode: `embedder.model.encode(texts, batch_size=32, normalize_embeddings=True)` on exactly
   the chunk texts the store holds (read back with `IndexStore.iter_chunks`), same model object.
   --order decides raw before ingest (texts pre-chunked with the ingestor's own chunker, then
   checked equal to the stored ones), after it, or both ("sandwich"). Ratio = ingest / raw chunks/s.
3. Query latency: `Assistant.search(q)` and `Assistant.ask(q)` for --queries SciFact queries (test
   split first), each timed on its own: p50 / p95 / mean ms, plus medians of ask's per-stage timings.

CPU time is recorded next to wall time for every phase: on a shared machine a process CPU/wall
ratio well below the thread count means other work took the cores.

Parts: bench_spine_measure.py (timers, latency figures, raw encode and its checks),
bench_spine_report.py (the printed report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_common import DEFAULT_BEIR, log  # noqa: E402  (first: offline switches, project on sys.path)
from bench_spine_measure import (
    Timer,
    latency_summary,
    padding_work,
    percentile,
    raw_encode,
    stage_stat,
    stored_chunks,
    vector_agreement,
)
from bench_spine_report import print_report

# -- data ------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_beir(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    missing = [p for p in (corpus_path, queries_path) if not p.is_file()]
    if missing:
        sys.exit(f"bench_spine: BEIR SciFact not found: missing {', '.join(map(str, missing))}.\n"
                 f"Pass --beir DIR (a folder with corpus.jsonl and queries.jsonl; default {DEFAULT_BEIR}).")
    corpus = read_jsonl(corpus_path)
    queries = read_jsonl(queries_path)
    test_ids: list[str] = []
    qrels = folder / "qrels" / "test.tsv"
    if qrels.is_file():
        for line in qrels.read_text(encoding="utf-8").splitlines()[1:]:
            if line.strip():
                test_ids.append(line.split("\t")[0])
    order = {qid: i for i, qid in enumerate(dict.fromkeys(test_ids))}
    # Test-split queries first (in qrels order), then the rest in file order.
    queries.sort(key=lambda q: order.get(str(q["_id"]), len(order)))
    return corpus, queries


def doc_text(doc: dict[str, Any]) -> str:
    return f"{doc.get('title', '')}\n\n{doc.get('text', '')}"


# -- phases ----------------------------------------------------------------------------------


def run_ingest_phase(args: argparse.Namespace, corpus: list[dict[str, Any]], embedder: Any,
                     index_dir: Path, results: dict[str, Any]) -> None:
    from assistant.ingest import Ingestor, TextItem
    from assistant.settings import Settings

    docs = corpus[: args.docs] if args.docs else corpus
    settings = Settings.from_env(index_dir=index_dir)
    ingestor = Ingestor(settings, embedder=embedder)
    items = [TextItem(f"scifact:{d['_id']}", doc_text(d), d.get("title", "")) for d in docs]
    results["ingest_settings"] = {
        "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
        "embed_batch_chunks": settings.embed_batch_chunks, "checkpoint_chunks": settings.checkpoint_chunks}

    # Warm-up outside every timed region: model weights, tokenizer, tiktoken BPE, chunker.
    sample = [doc_text(d) for d in docs[:64]]
    with Timer() as t:
        list(ingestor.chunker.chunks([sample[0]]))
        embedder.model.encode(sample, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    results["warm_up_s"] = round(t.wall, 2)
    log(f"warm-up done in {t.wall:.1f} s")

    order = args.order
    raws: list[dict[str, Any]] = []
    if order in ("raw-first", "sandwich"):
        # The ingestor's own chunker, exactly as ingest_texts feeds it (one segment per text).
        log(f"chunking {len(items)} docs (chunker only, no embedding) ...")
        with Timer() as t:
            pre_texts = [c.text for item in items for c in ingestor.chunker.chunks([item.text])]
        results["chunk_only"] = {"chunks": len(pre_texts), "seconds": round(t.wall, 2),
                                 "chunks_per_s": round(len(pre_texts) / t.wall, 1) if t.wall else 0.0}
        log(f"chunking: {len(pre_texts)} chunks in {t.wall:.1f} s")
        raws.append(raw_encode(embedder.model, pre_texts, "before ingest"))

    log(f"ingest: {len(items)} docs into {index_dir} ...")
    with Timer() as t:
        report = ingestor.ingest_texts(items, progress=False)
    failed = report.failed
    results["ingest"] = {"docs": len(items), "added": report.count("added"), "failed": len(failed),
                         "chunks": report.embedded_chunks, "seconds": round(report.seconds, 2),
                         "chunks_per_s": round(report.embedded_chunks / report.seconds, 2),
                         "chunks_per_cpu_s": round(report.embedded_chunks / t.cpu, 2) if t.cpu else 0.0,
                         **t.info()}
    if failed:
        results["ingest"]["failed_examples"] = [f"{r.source}: {r.reason}" for r in failed[:5]]
    log(f"ingest: {report.embedded_chunks} chunks in {report.seconds:.1f} s "
        f"= {results['ingest']['chunks_per_s']} chunks/s ({len(failed)} failed)")

    ids, texts, doc_ids = stored_chunks(index_dir, embedder)
    results["stored_chunks"] = len(texts)
    results["padding"] = padding_work(embedder.model, texts, doc_ids, max(32, settings.embed_batch_chunks))
    if order in ("raw-first", "sandwich"):
        same = texts == pre_texts
        results["pre_chunked_equals_stored"] = same
        if not same:
            log("WARNING: pre-chunked texts differ from the stored ones; the before-ingest raw figure "
                "is for different texts")
    if order in ("ingest-first", "sandwich"):
        raws.append(raw_encode(embedder.model, texts, "after ingest"))

    results["vector_agreement"] = vector_agreement(index_dir, embedder, ids, raws[-1]["_vectors"])
    for raw in raws:
        raw.pop("_vectors")
    results["raw"] = raws
    ingest_rate = results["ingest"]["chunks_per_s"]
    ratios = {r["label"]: round(ingest_rate / r["chunks_per_s"], 3) for r in raws}
    if len(raws) > 1:
        mean_raw = statistics.fmean(r["chunks_per_s"] for r in raws)
        ratios["mean of raw runs"] = round(ingest_rate / mean_raw, 3)
    results["ratio_ingest_over_raw"] = ratios

    if args.raw_grouped:
        # Raw encode in the same 256-chunk groups ingest embeds in: separates the cost of
        # length-sorting within smaller groups (more padding) from ingest's own overhead.
        step = max(32, settings.embed_batch_chunks)
        log(f"raw encode in groups of {step} ...")
        with Timer() as t:
            for start in range(0, len(texts), step):
                embedder.model.encode(texts[start : start + step], batch_size=32, normalize_embeddings=True,
                                      show_progress_bar=False)
        results["raw_grouped"] = {"group": step, "chunks": len(texts), "seconds": round(t.wall, 2),
                                  "chunks_per_s": round(len(texts) / t.wall, 2), **t.info()}
        log(f"raw grouped: {results['raw_grouped']['chunks_per_s']} chunks/s")


def run_query_phase(args: argparse.Namespace, queries: list[dict[str, Any]], embedder: Any,
                    index_dir: Path, results: dict[str, Any]) -> None:
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    settings = Settings.from_env(index_dir=index_dir)
    picked = [str(q["text"]) for q in queries[: args.queries]]
    with Timer() as t:
        assistant = Assistant(settings, embedder=embedder)
    results["assistant_open_s"] = round(t.wall, 3)
    with Timer() as t:
        assistant.warm_up()  # BM25 build over every stored chunk + one query encode
    results["assistant_warm_up_s"] = round(t.wall, 2)
    stats = assistant.store.stats()
    results["index"] = {k: stats[k] for k in ("documents", "chunks", "vectors")}
    log(f"assistant warm-up (BM25 over {stats['chunks']} chunks) {t.wall:.1f} s; {len(picked)} queries ...")
    # A few untimed calls so first-call effects (allocator, regex compile, caches) are not in p95.
    for q in picked[:3]:
        assistant.search(q)
        assistant.ask(q)

    def timed(fn: Callable[[str], Any]) -> tuple[list[float], list[Any], Timer]:
        out_ms: list[float] = []
        outs: list[Any] = []
        with Timer() as total:
            for q in picked:
                t0 = time.perf_counter()
                outs.append(fn(q))
                out_ms.append((time.perf_counter() - t0) * 1000)
        return out_ms, outs, total

    search_ms, search_out, search_t = timed(lambda q: assistant.search(q))
    results["search"] = {**latency_summary(search_ms), "top_k": settings.top_k, **search_t.info()}
    results["search"]["stage_median_ms"] = stage_stat(search_out, statistics.median)
    log(f"search: p50 {results['search']['p50_ms']} ms, p95 {results['search']['p95_ms']} ms")

    ask_ms, ask_out, ask_t = timed(lambda q: assistant.ask(q))
    results["ask"] = {**latency_summary(ask_ms), **ask_t.info(),
                      "abstained": sum(1 for r in ask_out if r.abstained)}
    results["ask"]["stage_median_ms"] = stage_stat(ask_out, statistics.median)
    results["ask"]["stage_p95_ms"] = stage_stat(ask_out, lambda v: percentile(v, 95))
    log(f"ask: p50 {results['ask']['p50_ms']} ms, p95 {results['ask']['p95_ms']} ms")
    assistant.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--beir", type=Path, default=DEFAULT_BEIR, help="BEIR SciFact folder (default: %(default)s)")
    add("--docs", type=int, default=0, help="ingest only the first N documents (default: all)")
    add("--queries", type=int, default=200, help="number of queries to time (default: %(default)s)")
    add("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    add("--index-dir", type=Path, default=None,
        help="use this index folder: reused as is (no ingestion) when it already holds an index, "
             "else ingested into and kept")
    parser.add_argument("--order", choices=("raw-first", "ingest-first", "sandwich"), default="raw-first",
                        help="raw encode before ingest, after it, or both (default: %(default)s)")
    parser.add_argument("--raw-grouped", action="store_true",
                        help="also time raw encode in ingest's 256-chunk groups (diagnostic)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.docs < 0 or args.queries < 0:
        parser.error("--docs and --queries must be >= 0")

    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    corpus, queries = load_beir(args.beir)
    log(f"SciFact: {len(corpus)} docs, {len(queries)} queries from {args.beir}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from assistant.embed import Embedder

    embedder = Embedder("all-MiniLM-L6-v2")
    with Timer() as t:
        _ = embedder.model  # import sentence-transformers + load weights: excluded from all figures
    results["model_load_s"] = round(t.wall, 2)
    results["environment"] = {
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    log(f"model loaded in {t.wall:.1f} s; torch threads {torch.get_num_threads()}")

    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.index_dir is not None:
        index_dir = args.index_dir.expanduser().resolve()
        reuse = (index_dir / "index.sqlite").exists()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_spine_")
        index_dir = Path(tmp.name) / "index"
        reuse = False
    results["index_dir"] = str(index_dir)
    results["index_reused"] = reuse
    try:
        if reuse:
            log(f"reusing the index at {index_dir}: ingestion skipped")
        else:
            run_ingest_phase(args, corpus, embedder, index_dir, results)
        if args.queries:
            run_query_phase(args, queries, embedder, index_dir, results)
    finally:
        if tmp is not None:
            tmp.cleanup()
    results["environment"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.perf_counter() - started, 1)
    print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
