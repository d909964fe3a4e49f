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

# -- small helpers ---------------------------------------------------------------------------


class Timer:
    """Wall and process-CPU seconds of a block, plus the 1-min load average at its end."""

    def __enter__(self) -> Timer:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.load = os.getloadavg()[0]

    def info(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 2), "cpu_s": round(self.cpu, 2),
                "cpu_per_wall": round(self.cpu / self.wall, 2) if self.wall else 0.0,
                "loadavg_1m_end": round(self.load, 2)}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "max_ms": round(max(ms), 2)}


def stage_stat(outs: Sequence[Any], fn: Callable[[list[float]], float]) -> dict[str, float]:
    """fn over each per-stage timing (ms) found in the results' `.timings` dicts."""
    keys = sorted({k for r in outs for k in r.timings})
    return {k: round(fn([r.timings[k] for r in outs if k in r.timings]), 2) for k in keys}


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


def raw_encode(model: Any, texts: list[str], label: str) -> dict[str, Any]:
    log(f"raw encode ({label}): {len(texts)} chunks ...")
    with Timer() as t:
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
    out = {"label": label, "chunks": len(texts), "seconds": round(t.wall, 2),
           "chunks_per_s": round(len(texts) / t.wall, 2),
           "chunks_per_cpu_s": round(len(texts) / t.cpu, 2) if t.cpu else 0.0, **t.info()}
    log(f"raw encode ({label}): {out['chunks_per_s']} chunks/s in {out['seconds']} s")
    out["_vectors"] = vectors
    return out


def stored_chunks(index_dir: Path, embedder: Any) -> tuple[list[int], list[str], list[str]]:
    """(chunk ids, texts, doc ids) in insertion order, as the store holds them."""
    from assistant.index import IndexStore

    with IndexStore.open(index_dir, embedder.name, embedder.dim) as store:
        rows = list(store.iter_chunks())
    return [r.id for r in rows], [r.text for r in rows], [r.doc_id for r in rows]


def padding_work(model: Any, texts: list[str], doc_ids: list[str], group: int) -> dict[str, Any]:
    """Token positions the model computes (batch max length x batch size), load-independent.

    SentenceTransformer.encode sorts each call's inputs by character length and pads every
    batch of 32 to its longest member. Raw encode makes one call over all chunks; ingest calls
    it once per flush: documents accumulate until >= `group` chunks are pending, then are
    encoded in slices of `group` (Ingestor._run / _flush). Fewer inputs per call means less
    well-matched lengths per batch, so more padding.
    """
    tok = model.tokenizer
    limit = int(model.max_seq_length)
    lengths = [min(len(ids), limit) for ids in tok(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    def padded(indices: list[int]) -> int:
        order = sorted(indices, key=lambda i: -len(texts[i]))
        return sum(max(lengths[i] for i in order[b : b + 32]) * len(order[b : b + 32])
                   for b in range(0, len(order), 32))

    calls: list[list[int]] = []
    pending: list[int] = []
    for i, doc in enumerate(doc_ids):
        last_of_doc = i + 1 == len(doc_ids) or doc_ids[i + 1] != doc
        pending.append(i)
        if last_of_doc and len(pending) >= group:
            calls.extend(pending[s : s + group] for s in range(0, len(pending), group))
            pending = []
    if pending:
        calls.extend(pending[s : s + group] for s in range(0, len(pending), group))
    real = sum(lengths)
    global_padded = padded(list(range(len(texts))))
    ingest_padded = sum(padded(c) for c in calls)
    return {"real_tokens": real, "raw_padded_tokens": global_padded, "ingest_padded_tokens": ingest_padded,
            "ingest_encode_calls": len(calls),
            "expected_ratio_from_padding": round(global_padded / ingest_padded, 3),
            "mean_tokens_per_chunk": round(real / max(len(texts), 1), 1)}


def vector_agreement(index_dir: Path, embedder: Any, ids: list[int], raw_vectors: Any) -> dict[str, float]:
    """Cosine between the stored vectors and the raw-encoded ones (same texts, same model)."""
    import numpy as np

    from assistant.index import IndexStore

    with IndexStore.open(index_dir, embedder.name, embedder.dim) as store:
        stored = np.stack([store.vectors.reconstruct(int(i)) for i in ids])
    cos = np.sum(stored * np.asarray(raw_vectors, dtype=np.float32), axis=1)
    return {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}


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


# -- report ----------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    env = results["environment"]
    print(f"\n== bench_spine  {results['started_at']}  ({env['cpus']} CPUs, "
          f"torch threads {env['torch_threads']}, load avg at start {env['loadavg_start']})")
    print(f"model load {results['model_load_s']} s (excluded); "
          f"warm-up {results.get('warm_up_s', '-')} s (excluded)")
    if "ingest" in results:
        ing = results["ingest"]
        print(f"\nIngest  {ing['docs']} docs -> {ing['chunks']} chunks in {ing['seconds']} s = "
              f"{ing['chunks_per_s']} chunks/s  (cpu/wall {ing['cpu_per_wall']}, failed {ing['failed']})")
        if "chunk_only" in results:
            c = results["chunk_only"]
            print(f"  chunking alone: {c['seconds']} s for {c['chunks']} chunks")
        for raw in results["raw"]:
            print(f"Raw encode ({raw['label']}): {raw['chunks']} chunks in {raw['seconds']} s = "
                  f"{raw['chunks_per_s']} chunks/s  (cpu/wall {raw['cpu_per_wall']})")
        if "raw_grouped" in results:
            g = results["raw_grouped"]
            print(f"Raw encode in groups of {g['group']}: {g['chunks_per_s']} chunks/s")
        for label, ratio in results["ratio_ingest_over_raw"].items():
            print(f"Ratio ingest/raw ({label}): {ratio}  (target >= 0.9)")
        cpu_ratio = [round(ing["chunks_per_cpu_s"] / r["chunks_per_cpu_s"], 3) for r in results["raw"]]
        print(f"Ratio per CPU-second (less sensitive to other load): {cpu_ratio}")
        pad = results["padding"]
        print(f"Padding: {pad['real_tokens']} real tokens; padded {pad['raw_padded_tokens']} raw vs "
              f"{pad['ingest_padded_tokens']} ingest ({pad['ingest_encode_calls']} encode calls) -> "
              f"ratio expected from padding alone {pad['expected_ratio_from_padding']}")
        print(f"stored vs raw vectors: {results['vector_agreement']}"
              + (f"; pre-chunked == stored: {results['pre_chunked_equals_stored']}"
                 if "pre_chunked_equals_stored" in results else ""))
    if "search" in results:
        idx = results["index"]
        print(f"\nQueries on {idx['documents']} docs / {idx['chunks']} chunks "
              f"(Assistant warm-up {results['assistant_warm_up_s']} s, excluded)")
        for name in ("search", "ask"):
            r = results[name]
            print(f"{name:6s} n={r['n']}  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  mean {r['mean_ms']} ms"
                  f"  max {r['max_ms']} ms  (cpu/wall {r['cpu_per_wall']})")
        for label, key in (("medians", "stage_median_ms"), ("p95", "stage_p95_ms")):
            stages = results["ask"][key]
            print(f"ask stage {label} (ms): " + ", ".join(f"{k} {v}" for k, v in stages.items()))
        print(f"ask p50 target < 60 ms: {'met' if results['ask']['p50_ms'] < 60 else 'NOT met'}")
    print(f"\nload avg at end {results['environment']['loadavg_end']}; total wall {results['total_s']} s")


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
