"""What benchmarks/bench_spine.py measures with: wall and CPU timers, latency percentiles, raw
model encode of the stored chunk texts, the padding work each way of batching implies, and
agreement of the stored vectors with the raw ones."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import log

# -- timing ----------------------------------------------------------------------------------


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


# -- raw encode and its checks ---------------------------------------------------------------


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
    # One text per call: the ONNX path's FastTokenizer (assistant/word_pieces.py) takes a single string.
    lengths = [min(len(tok(text, add_special_tokens=True, truncation=False)["input_ids"]), limit) for text in texts]

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
