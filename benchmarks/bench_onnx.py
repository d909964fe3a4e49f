"""fp32 torch vs int8 ONNX (`embed_backend="onnx-int8"`) encoders of all-MiniLM-L6-v2 on SciFact.

Prints figures; it is not a test. Run from the project root:

    .venv/bin/python benchmarks/bench_onnx.py                     # 2,000 texts, 200 queries
    .venv/bin/python benchmarks/bench_onnx.py --texts 300 --queries 50 --json /tmp/onnx.json

In one warm process (model loads and the int8 build are timed apart, never inside a figure):

1. Raw encode throughput of the first --texts SciFact documents (title + blank line + abstract, as
   the ingestor writes them; the models truncate at their 256 word pieces), batch 32, with the
   threads torch has by default (--threads to change): int8, then fp32, then int8 again (a change
   of load between phases shows up as a gap between the two int8 figures).
2. Cosine between the fp32 and int8 vector of each text: mean, min, 1st percentile.
3. Query encode latency, one query per call, 1 thread for both (the server's setting), on the first
   --queries SciFact queries: p50 / p95 / mean ms.

CPU time is recorded next to wall time: on a shared machine cpu/wall well below the thread count
means other work took the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BEIR = PROJECT_ROOT.parent / "shared" / "benchmarks" / "scifact"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="threads for the throughput phase "
                        "(default: torch's default, the number of cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from assistant import onnx_embed
    from assistant.embed import Embedder, resolve_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    docs = read_jsonl(args.beir / "corpus.jsonl", args.texts)
    texts = [f"{d.get('title', '')}\n\n{d.get('text', '')}".strip() for d in docs]
    queries = [q["text"] for q in read_jsonl(args.beir / "queries.jsonl", args.queries)]
    report: dict[str, Any] = {"texts": len(texts), "queries": len(queries), "threads": threads,
                              "isa": onnx_embed.detect_isa(), "torch": torch.__version__,
                              "onnxruntime": onnxruntime.__version__, "cores": os.cpu_count(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}

    fp32 = Embedder("all-MiniLM-L6-v2", "torch")
    int8 = Embedder("all-MiniLM-L6-v2", "onnx-int8")
    _, report["load_fp32"] = timed(lambda: fp32.model)
    _, report["load_int8"] = timed(lambda: int8.model)  # includes the one-time build if not cached
    report["int8_model"] = str(int8.model.onnx_path)
    report["int8_builds_this_run"] = onnx_embed.builds
    pieces = [min(fp32.count_tokens(t), fp32.max_tokens) for t in texts]
    report["word_pieces_per_text_mean"] = round(statistics.fmean(pieces), 1)
    warm = texts[:64]
    fp32.encode(warm)
    int8.encode(warm)

    def throughput(embedder: Embedder, label: str) -> np.ndarray:
        log(f"encode {len(texts)} texts with {label} ...")
        vectors, info = timed(lambda: embedder.encode(texts, batch_size=32))
        info["texts_per_s"] = round(len(texts) / info["wall_s"], 2)
        report.setdefault("throughput", {})[label] = info
        log(f"  {label}: {info}")
        return vectors

    v8 = throughput(int8, "int8_first")
    v32 = throughput(fp32, "fp32")
    throughput(int8, "int8_again")
    cos = np.sum(v32 * v8, axis=1)
    report["cosine_fp32_int8"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5),
                                  "p1": round(percentile(cos, 1), 5)}
    t = report["throughput"]
    report["speedup_int8_vs_fp32"] = round(statistics.fmean([t["int8_first"]["texts_per_s"], t["int8_again"]["texts_per_s"]])
                                           / t["fp32"]["texts_per_s"], 2)

    log(f"query latency, 1 thread, {len(queries)} queries ...")
    torch.set_num_threads(1)
    one_thread_int8 = onnx_embed.OnnxEncoder("all-MiniLM-L6-v2", resolve_model_path("all-MiniLM-L6-v2"), threads=1)
    report["query_latency_1_thread"] = {
        "fp32": latency(lambda q: fp32.model.encode([q], batch_size=1, normalize_embeddings=True), queries),
        "int8": latency(lambda q: one_thread_int8.encode([q], batch_size=1), queries),
    }
    report["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
