"""The exact vectors file, `vectors-<gen>.faiss` (a FAISS IndexIDMap2 over IndexFlatIP), read and
written in slices, and `DiskVectors`: a writer's exact vectors for a large index.

Why: 1M x 384 float32 vectors are 1.47 GB. Held in a writer's memory next to the HNSW being built
and the BM25 build, they pushed a 1M build to 8.3 GB. Here a writer keeps them on disk: the
committed file stays memory-mapped (as readers open it), a transaction's additions go to an
unnamed spill file in the index folder, and `commit` streams the next generation's file from both,
slice by slice. Slices are read with `pread`, not through the mapping, so they cost page cache,
not the writer's resident memory.

The file layout (checked against `faiss.write_index` in the tests): "IxM2", index header,
"IxFI", index header, the float count and the float32 rows, the id count and the int64 ids.
"""

from __future__ import annotations

import os
import struct
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import faiss
import numpy as np

SLICE_ROWS = 100_000  # rows per HNSW add batch (147 MB at 384 dims), as build_ann adds them
COPY_ROWS = 16_384  # rows per step when a commit copies the exact vectors (24 MB at 384 dims)
READ_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY  # as readers open index files
_HEADER = struct.Struct("<iqqq?i")  # d, ntotal, two unused fields (1 << 20), is_trained, metric
_COUNT = struct.Struct("<Q")
_UNUSED = 1 << 20
_METRIC_INNER_PRODUCT = 0


class FlatFileError(Exception):
    """The file is not an exact vectors file as the store writes them."""


@dataclass(frozen=True)
class FlatFileLayout:
    """Where an exact vectors file keeps its rows and ids."""

    dim: int
    ntotal: int

    @property
    def rows_offset(self) -> int:
        return 2 * (4 + _HEADER.size) + _COUNT.size

    @property
    def ids_offset(self) -> int:
        return self.rows_offset + self.ntotal * self.dim * 4 + _COUNT.size

    def header(self) -> bytes:
        one = _HEADER.pack(self.dim, self.ntotal, _UNUSED, _UNUSED, True, _METRIC_INNER_PRODUCT)
        return b"IxM2" + one + b"IxFI" + one + _COUNT.pack(self.ntotal * self.dim)


def read_layout(path: Path) -> FlatFileLayout:
    """The layout of an exact vectors file; FlatFileError when it is not one."""
    size = 2 * (4 + _HEADER.size) + _COUNT.size
    with open(path, "rb") as handle:
        head = handle.read(size)
    if len(head) != size or head[:4] != b"IxM2" or head[4 + _HEADER.size : 8 + _HEADER.size] != b"IxFI":
        raise FlatFileError(f"{path} is not an IndexIDMap2 over IndexFlatIP")
    dim, ntotal, *_rest, metric = _HEADER.unpack_from(head, 4)
    layout = FlatFileLayout(dim, ntotal)
    if metric != _METRIC_INNER_PRODUCT or layout.header() != head:
        raise FlatFileError(f"{path}: unexpected header")
    if os.path.getsize(path) != layout.ids_offset + 8 * ntotal:
        raise FlatFileError(f"{path}: size does not match {ntotal} vectors of dim {dim}")
    return layout


def _pread_into(fd: int, out: np.ndarray, offset: int) -> np.ndarray:
    """Fill `out` from the file at `offset` (no intermediate bytes object); returns `out`."""
    view = out.reshape(-1).data.cast("B")
    done = 0
    while done < len(view):  # a large read may return less
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise FlatFileError(f"short read at offset {offset + done}")
        done += got
    return out


def iter_flat_file(path: Path, rows: int = SLICE_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(vectors float32 (r, dim), ids int64 (r,)) of an exact vectors file, `rows` at a time, in order."""
    layout = read_layout(path)
    row_bytes = layout.dim * 4
    fd = os.open(path, os.O_RDONLY)
    try:
        for start in range(0, layout.ntotal, rows):
            count = min(rows, layout.ntotal - start)
            vectors = _pread_into(fd, np.empty((count, layout.dim), np.float32), layout.rows_offset + start * row_bytes)
            ids = _pread_into(fd, np.empty(count, np.int64), layout.ids_offset + start * 8)
            yield vectors, ids
    finally:
        os.close(fd)


class FlatFileWriter:
    """Writes an exact vectors file from slices: rows as they come, ids (8 bytes a row) kept until
    the end, then the header with the final count. `finish()` fsyncs; the caller renames."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.ntotal = path, dim, 0
        self._ids = array("q")
        self._handle = open(path, "wb")
        self._handle.write(FlatFileLayout(dim, 0).header())  # rewritten with the count at the end

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        self._handle.write(vectors.reshape(-1).data.cast("B"))
        self._ids.extend(np.asarray(ids, dtype=np.int64).tolist())
        self.ntotal += len(vectors)

    def finish(self) -> None:
        self._handle.write(_COUNT.pack(self.ntotal))
        self._handle.write(self._ids.tobytes())
        self._handle.seek(0)
        self._handle.write(FlatFileLayout(self.dim, self.ntotal).header())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def abort(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)


class DiskVectors:
    """A writer's exact vectors without holding them in memory: the committed generation's file
    (memory-mapped, or none) plus this transaction's additions (in an unnamed spill file in the
    index folder, so a crash leaves nothing behind) minus its removals.

    Offers what `IndexStore` uses of a FAISS index: ntotal, add_with_ids, remove_ids,
    reconstruct_batch and search. Chunk ids are never reused, so a removed id is either committed
    or pending, never both."""

    def __init__(self, folder: Path, dim: int, committed: Path | None = None) -> None:
        self.folder, self.dim = folder, dim
        self.committed_path = committed
        self.committed: faiss.Index | None = faiss.read_index(str(committed), READ_FLAGS) if committed else None
        self._spill_file: IO[bytes] | None = None  # opened on the first addition
        self._pending_ids = array("q")
        self._removed: set[int] = set()
        self._removed_array: np.ndarray | None = None  # the same ids for np.isin, built on first use

    @classmethod
    def spilled_from(cls, folder: Path, index: faiss.Index) -> DiskVectors:
        """Every vector of an in-memory IndexIDMap2 as pending additions (the index grew too big)."""
        disk = cls(folder, index.d)
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)  # type: ignore[attr-defined]
        inner = faiss.downcast_index(index.index)  # type: ignore[attr-defined]
        for start in range(0, len(ids), SLICE_ROWS):
            count = min(SLICE_ROWS, len(ids) - start)
            disk.add_with_ids(inner.reconstruct_n(start, count), ids[start : start + count])
        return disk

    # -- the FAISS-like surface ---------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        committed = self.committed.ntotal if self.committed is not None else 0
        return int(committed + len(self._pending_ids) - len(self._removed))

    @property
    def changed(self) -> bool:
        return bool(self._pending_ids) or bool(self._removed)

    def add_with_ids(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self._spill_file is None:
            self._spill_file = tempfile.TemporaryFile(dir=self.folder, prefix=".vectors-spill-", suffix=".tmp")
        os.pwrite(self._spill_file.fileno(), vectors.reshape(-1).data.cast("B"), len(self._pending_ids) * self.dim * 4)
        self._pending_ids.extend(np.asarray(ids, dtype=np.int64).tolist())

    def remove_ids(self, ids: np.ndarray) -> int:
        self._removed.update(int(i) for i in np.asarray(ids).ravel())
        self._removed_array = None
        return len(ids)

    def reconstruct_batch(self, keys: np.ndarray) -> np.ndarray:
        """The vectors of these ids, in order; RuntimeError (as FAISS) for an unknown or removed id."""
        keys = np.asarray(keys, dtype=np.int64).ravel()
        if self._removed and any(int(k) in self._removed for k in keys):
            raise RuntimeError("id removed")
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        pending = np.frombuffer(self._pending_ids, dtype=np.int64) if self._pending_ids else np.zeros(0, np.int64)
        in_pending = np.isin(keys, pending)
        if (~in_pending).any():
            if self.committed is None:
                raise RuntimeError("id not found")
            out[~in_pending] = self.committed.reconstruct_batch(keys[~in_pending])
        if in_pending.any():
            order = np.argsort(pending, kind="stable")
            rows = order[np.searchsorted(pending, keys[in_pending], sorter=order)]
            out[in_pending] = np.concatenate([self._spilled_rows(int(r), 1) for r in rows])
        return out

    def _spilled_rows(self, start: int, count: int) -> np.ndarray:
        assert self._spill_file is not None
        return _pread_into(self._spill_file.fileno(), np.empty((count, self.dim), np.float32), start * self.dim * 4)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k (scores (1, k), ids (1, k)). Unchanged: the committed file's FAISS search.
        With uncommitted changes a scan of every live row (slow for big indexes; no product path
        searches a writer mid-transaction)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if not self.changed and self.committed is not None:
            return self.committed.search(q.reshape(1, -1), k)
        best_scores, best_ids = np.zeros(0, np.float32), np.zeros(0, np.int64)
        for vectors, ids in self.iter_rows():
            scores = np.concatenate([best_scores, vectors @ q])
            every = np.concatenate([best_ids, ids])
            top = np.argsort(-scores, kind="stable")[:k]
            best_scores, best_ids = scores[top], every[top]
        pad = k - len(best_ids)
        return (np.pad(best_scores, (0, pad), constant_values=-np.inf).reshape(1, k).astype(np.float32),
                np.pad(best_ids, (0, pad), constant_values=-1).reshape(1, k))

    # -- streaming ------------------------------------------------------------------------------

    def iter_rows(self, rows: int = SLICE_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every live (vectors, ids), committed rows first, then this transaction's additions."""
        if self.committed_path is not None:
            for vectors, ids in iter_flat_file(self.committed_path, rows):
                yield self._live(vectors, ids)
        pending = np.frombuffer(self._pending_ids, dtype=np.int64) if self._pending_ids else np.zeros(0, np.int64)
        for start in range(0, len(pending), rows):
            ids = pending[start : start + rows]
            yield self._live(self._spilled_rows(start, len(ids)), ids)

    def _live(self, vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._removed:
            return vectors, ids
        if self._removed_array is None:
            self._removed_array = np.fromiter(self._removed, dtype=np.int64, count=len(self._removed))
        keep = ~np.isin(ids, self._removed_array)
        return vectors[keep], ids[keep]

    def write(self, path: Path) -> None:
        """The next generation's exact vectors file at `path` (written, fsynced; not renamed)."""
        writer = FlatFileWriter(path, self.dim)
        try:
            for vectors, ids in self.iter_rows(COPY_ROWS):
                writer.append(vectors, ids)
            writer.finish()
        except BaseException:
            writer.abort()
            raise

    def close(self) -> None:
        """Drop the spill file (it has no name, so closing removes it) and the mapping."""
        if self._spill_file is not None:
            self._spill_file.close()
            self._spill_file = None
        self._pending_ids = array("q")
        self._removed, self._removed_array = set(), None
        self.committed = None
