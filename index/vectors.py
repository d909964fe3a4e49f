"""The vectors' search side of the local store: FAISS HNSW graphs built in slices, and search with
exact re-scoring from the flat vectors (memory-mapped for readers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np

from assistant.index.flatfile import SLICE_ROWS

ANN_TRAIN_SAMPLE = 100_000  # vectors the 8-bit quantizer's ranges are trained on
RowSlices = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # each call: (vectors, ids) slices, in order


def _empty_ann(dim: int, kind: str, m: int, ef_construction: int) -> faiss.Index:
    inner: faiss.Index
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    elif kind == "hnsw_sq8":
        inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m,  # type: ignore[arg-type]
                                  faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"{kind!r} is not an approximate index type")
    inner.hnsw.efConstruction = ef_construction
    return inner


def _training_sample(slices: Iterable[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """The same ANN_TRAIN_SAMPLE rows (random, seed 0) as the whole array would give, picked from slices."""
    positions = np.sort(np.random.default_rng(0).choice(n, min(n, ANN_TRAIN_SAMPLE), replace=False))
    parts, start = [], 0
    for vectors, _ids in slices:
        lo, hi = np.searchsorted(positions, [start, start + len(vectors)])
        parts.append(np.array(vectors[positions[lo:hi] - start], dtype=np.float32))
        start += len(vectors)
    return np.concatenate(parts)


def build_ann_from(slices: RowSlices, n: int, dim: int, kind: str, m: int = 32,
                   ef_construction: int = 80) -> faiss.Index:
    """An approximate inner-product index (IndexIDMap over HNSW) of `n` vectors read slice by slice:
    `slices()` is read once for the quantizer's training sample (hnsw_sq8), once to add. Each slice
    is quantized as it is added, so memory holds the graph and codes plus one slice, never all the
    float32 vectors. Slices of SLICE_ROWS give the same index as `build_ann` on the whole array."""
    inner = _empty_ann(dim, kind, m, ef_construction)
    if kind == "hnsw_sq8":
        inner.train(_training_sample(slices(), n))
    index = faiss.IndexIDMap(inner)
    for vectors, ids in slices():
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return index


def build_ann(vectors: np.ndarray, ids: np.ndarray, kind: str, m: int = 32, ef_construction: int = 80) -> faiss.Index:
    """`build_ann_from` over arrays in memory."""
    def slices() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(vectors), SLICE_ROWS):
            yield vectors[start : start + SLICE_ROWS], ids[start : start + SLICE_ROWS]

    return build_ann_from(slices, len(vectors), vectors.shape[1], kind, m, ef_construction)


def read_through(path: Path) -> None:
    """Read a file once, sequentially, so its pages are in the page cache before it is memory-mapped.

    An HNSW search touches pages all over the file; from a cold cache each is a random disk read
    (1M vectors: search p50 about 22 ms, p95 about 80 ms, and 5 s to open). One sequential read
    (about 1 s for the 633 MB file from disk, a fraction of that when cached) brings p50 to a few ms."""
    try:
        with open(path, "rb", buffering=0) as handle:
            while handle.read(1 << 24):
                pass
    except OSError:
        pass  # read_index reports a missing file


def set_ef_search(index: faiss.Index, ef: int) -> None:
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = ef


def search_vectors(flat: faiss.Index, ann: faiss.Index | None, query: np.ndarray, k: int, ef_search: int,
                   rerank: bool = True) -> list[tuple[int, float]]:
    """Top k (id, inner product). With an approximate index: its top max(2k, k + 20), then exact
    re-scoring of those from the flat vectors (memory-mapped for readers), which lifts recall and
    gives exact cosines."""
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if ann is None:
        scores, ids = flat.search(q, min(k, flat.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]
    wanted = min(max(2 * k, k + 20) if rerank else k, ann.ntotal)
    set_ef_search(ann, max(ef_search, wanted))
    scores, ids = ann.search(q, wanted)
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]
    if rerank and found:
        keys = np.asarray([i for i, _ in found], dtype=np.int64)
        exact = flat.reconstruct_batch(keys) @ q[0]
        found = sorted(zip(keys.tolist(), exact.tolist(), strict=True), key=lambda pair: -pair[1])
    return found[:k]
