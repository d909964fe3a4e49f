"""How a chunk's answer units are stored (both stores): int32 spans and float16 vectors as bytes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from assistant.types import StoreError

UnitRows = Sequence[tuple[np.ndarray, np.ndarray]]  # per chunk: (spans int32 (n, 2), vectors (n, dim))


def pack_units(spans: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[int, bytes, bytes]:
    """One chunk's units as stored: (n, int32 spans bytes, float16 vectors bytes)."""
    spans = np.ascontiguousarray(spans, dtype=np.int32).reshape(-1, 2)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    if len(spans) != len(vectors):
        raise StoreError(f"{len(spans)} unit spans but {len(vectors)} unit vectors")
    return len(spans), spans.tobytes(), np.ascontiguousarray(vectors, dtype=np.float16).tobytes()


def pack_chunk_units(units: UnitRows | None, n_chunks: int, source: str, dim: int) -> list[tuple[int, bytes, bytes]] | None:
    """Every chunk's units packed (`pack_units`), one per chunk, or None when there are none."""
    if units is None:
        return None
    if len(units) != n_chunks:
        raise StoreError(f"{source}: {n_chunks} chunks but units for {len(units)}")
    return [pack_units(spans, vectors, dim) for spans, vectors in units]


def unpack_units(n: int, spans: bytes, vectors: bytes, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(spans int32 (n, 2), unit-length float32 vectors (n, dim)) from stored bytes."""
    s = np.frombuffer(spans, dtype=np.int32, count=2 * n).reshape(n, 2)
    v = np.frombuffer(vectors, dtype=np.float16, count=n * dim).reshape(n, dim).astype(np.float32)
    v /= np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)  # float16 rounding moves the length
    return s, v
