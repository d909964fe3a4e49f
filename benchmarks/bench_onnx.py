"""fp32 torch vs fp32 ONNX (`embed_backend="onnx"`, the default) vs int8 ONNX (`"onnx-int8"`)
encoders of all-MiniLM-L6-v2 on SciFact.

Prints figures; it is not a test. Run from the project root:

    .venv/bin/python benchmarks/bench_onnx.py                       # 1,500 docs, 200 queries
    .venv/bin/python benchmarks/bench_onnx.py --docs 300 --queries 50 --json /tmp/onnx.json
    .venv/bin/python benchmarks/bench_onnx.py --docs 0              # all 5,183 docs

In one warm process (model loads and the int8 build are timed apart, never inside a figure):

1. The first --docs SciFact documents (title, blank line, abstract) are chunked once with the
   ingestor's own chunker (default settings), outside every timed region; the texts the ingestor
   embeds (`embedding_text`: the title in front of chunks that do not start with it) are the input
   of every phase:
   - `fp32_raw`: sentence-transformers `encode(chunks, batch_size=32)` (the baseline; torch's
     default threads, --threads to change);
   - `onnx_raw` / `int8_raw`: `OnnxEncoder.encode(chunks, batch_size=32)`, fp32 / int8 (same thread
     count);
   - `onnx_ingest`: like int8_ingest with the fp32 ONNX embedder;
   - `int8_ingest`: the full `Ingestor.ingest_texts` with the onnx-int8 embedder into a fresh
     index (hash, chunk, encode, SQLite + FAISS writes, commits), chunks per second of wall time.
   Phases run interleaved, by default fp32_raw, int8_raw, int8_ingest, then the reverse
   (--order), so a change of load shows up as a gap between the two figures of one phase.
   Ratios use the mean rate of each phase; per CPU-second ratios are given too (process CPU time,
   all threads).
2. Cosine between the fp32 and int8 vector of each chunk (and of the stored int8 vectors).
3. Query encode latency, one query per call, 1 thread for both (the server's setting), on the first
   --queries SciFact queries: p50 / p95 / mean ms.

CPU time and the 1-minute load average are recorded next to wall time: on a shared machine
cpu/wall well below the thread count means other work took the cores.
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


def read_jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if len(rows) >= limit:
                    break
    return rows


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return out, {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_per_wall": round(cpu / wall, 2),
                 "loadavg_1m_end": round(os.getloadavg()[0], 2)}


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency(encode: Callable[[str], Any], queries: Sequence[str]) -> dict[str, float]:
    for q in queries[:5]:  # warm-up
        encode(q)
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        encode(q)
        ms.append((time.perf_counter() - t0) * 1000)
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--docs", type=int, default=1500, help="first N SciFact docs (0: all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="threads for the throughput phases "
                        "(default: torch's default, the number of cores)")
    parser.add_argument("--order", default="fp32_raw,onnx_raw,int8_raw,int8_ingest,onnx_ingest,"
                                           "onnx_ingest,int8_ingest,int8_raw,onnx_raw,fp32_raw",
                        help="comma-separated phases, run in this order")
    parser.add_argument("--index-root", type=Path, default=Path("/tmp/bench_onnx_index"),
                        help="fresh index folders for the ingest phases are made under it")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import shutil

    import onnxruntime
    import torch

    from assistant import onnx_embed
    from assistant.chunk import embedding_text
    from assistant.embed import Embedder, resolve_model_path
    from assistant.index import IndexStore
    from assistant.ingest import Ingestor, TextItem
    from assistant.settings import Settings

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    docs = read_jsonl(args.beir / "corpus.jsonl", args.docs or 10**9)
    items = [TextItem(f"scifact:{d['_id']}", f"{d.get('title', '')}\n\n{d.get('text', '')}", d.get("title", ""))
             for d in docs]
    queries = [q["text"] for q in read_jsonl(args.beir / "queries.jsonl", args.queries)]
    report: dict[str, Any] = {"docs": len(docs), "queries": len(queries), "threads": threads,
                              "isa": onnx_embed.detect_isa(), "torch": torch.__version__,
                              "onnxruntime": onnxruntime.__version__, "cores": os.cpu_count(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}

    fp32 = Embedder("all-MiniLM-L6-v2", "torch")
    int8 = Embedder("all-MiniLM-L6-v2", "onnx-int8")
    onnx = Embedder("all-MiniLM-L6-v2", "onnx")
    _, report["load_fp32"] = timed(lambda: fp32.model)
    _, report["load_onnx"] = timed(lambda: onnx.model)  # includes the one-time build if not cached
    _, report["load_int8"] = timed(lambda: int8.model)  # includes the one-time build if not cached
    report["int8_model"] = str(int8.model.onnx_path)
    report["int8_builds_this_run"] = onnx_embed.builds
    report["int8_workers"] = int8.model.workers
    settings = Settings.from_env()
    chunker = Ingestor(settings, fp32).chunker
    log(f"chunking {len(items)} docs ...")
    chunked, report["chunking"] = timed(lambda: [(it.title, c.text) for it in items for c in chunker.chunks([it.text])])
    stored_texts = [text for _title, text in chunked]
    chunks = [embedding_text(title, text, settings.embed_context) for title, text in chunked]
    pieces = [min(fp32.count_tokens(t), fp32.max_tokens) for t in chunks]
    report["chunks"] = len(chunks)
    report["word_pieces_per_chunk_mean"] = round(statistics.fmean(pieces), 1)
    report["settings"] = {"chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
                          "embed_context": settings.embed_context,
                          "embed_batch_chunks": settings.embed_batch_chunks,
                          "checkpoint_chunks": settings.checkpoint_chunks}
    warm = chunks[:64]
    fp32.model.encode(warm, batch_size=32, normalize_embeddings=True)
    int8.encode(warm)
    onnx.encode(warm)
    log(f"{len(chunks)} chunks, {report['word_pieces_per_chunk_mean']} word pieces on average")

    vectors: dict[str, np.ndarray] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for n, phase in enumerate(args.order.split(",")):
        log(f"{phase} ({len(chunks)} chunks) ...")
        if phase == "fp32_raw":
            out, info = timed(lambda: fp32.model.encode(chunks, batch_size=32, normalize_embeddings=True,
                                                        convert_to_numpy=True, show_progress_bar=False))
            vectors.setdefault(phase, out)
        elif phase in ("onnx_raw", "int8_raw"):
            model = (onnx if phase == "onnx_raw" else int8).model
            out, info = timed(lambda: model.encode(chunks, batch_size=32, normalize_embeddings=True))  # noqa: B023
            vectors.setdefault(phase, out)
        elif phase in ("onnx_ingest", "int8_ingest"):
            embedder = onnx if phase == "onnx_ingest" else int8
            folder = args.index_root / f"{phase}-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            ingest = Ingestor(settings.override(index_dir=folder), embedder).ingest_texts
            result, info = timed(lambda: ingest(items, progress=False))  # noqa: B023 - called at once
            info["embedded_chunks"] = result.embedded_chunks
            info["failed"] = len(result.failed)
            assert result.embedded_chunks == len(chunks), (result.embedded_chunks, len(chunks))
            if phase not in vectors:
                with IndexStore.open(folder, embedder.name, embedder.dim) as store:
                    stored = list(store.iter_chunks())
                    assert [c.text for c in stored] == stored_texts, "stored chunks differ from the pre-chunked texts"
                    vectors[phase] = store.vectors_of([c.id for c in stored])
        else:
            raise SystemExit(f"unknown phase {phase!r}")
        info["chunks_per_s"] = round(len(chunks) / info["wall_s"], 2)
        info["chunks_per_cpu_s"] = round(len(chunks) / info["cpu_s"], 2)
        runs.setdefault(phase, []).append(info)
        log(f"  {phase}: {info}")
    report["phases"] = runs
    mean = {p: statistics.fmean(r["chunks_per_s"] for r in rs) for p, rs in runs.items()}
    per_cpu = {p: statistics.fmean(r["chunks_per_cpu_s"] for r in rs) for p, rs in runs.items()}
    report["mean_chunks_per_s"] = {p: round(v, 2) for p, v in mean.items()}
    report["mean_chunks_per_cpu_s"] = {p: round(v, 2) for p, v in per_cpu.items()}
    if "fp32_raw" in mean:
        report["ratio_vs_fp32_raw"] = {p: round(v / mean["fp32_raw"], 2) for p, v in mean.items()}
        report["ratio_per_cpu_s_vs_fp32_raw"] = {p: round(v / per_cpu["fp32_raw"], 2) for p, v in per_cpu.items()}
    if "fp32_raw" in vectors:
        report["cosine_to_fp32"] = {}
        for phase in ("onnx_raw", "onnx_ingest", "int8_raw", "int8_ingest"):
            if phase in vectors:
                cos = np.sum(vectors["fp32_raw"] * vectors[phase], axis=1)
                report["cosine_to_fp32"][phase] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5),
                                                   "p1": round(percentile(cos, 1), 5)}

    if queries:
        log(f"query latency, 1 thread, {len(queries)} queries ...")
        torch.set_num_threads(1)
        path = resolve_model_path("all-MiniLM-L6-v2")
        one_thread_int8 = onnx_embed.OnnxEncoder("all-MiniLM-L6-v2", path, threads=1)
        one_thread_onnx = onnx_embed.OnnxEncoder("all-MiniLM-L6-v2", path, threads=1, precision="fp32")
        report["query_latency_1_thread"] = {
            "fp32": latency(lambda q: fp32.model.encode([q], batch_size=1, normalize_embeddings=True), queries),
            "onnx": latency(lambda q: one_thread_onnx.encode([q], batch_size=1), queries),
            "int8": latency(lambda q: one_thread_int8.encode([q], batch_size=1), queries),
        }
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
