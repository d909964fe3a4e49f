"""Atomic generation commits of the local store (see store.py): a commit writes the generation's
exact vectors, its BM25 index and (for an approximate index type) its HNSW graph as new files
(temp, fsync, rename), records their names in the same SQLite transaction as the rows, commits,
and only then deletes the previous generation's files. A crash leaves the old set or the new one.
"""

from __future__ import annotations

import os
import shutil
from array import array
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from assistant.atomic import fsync_dir
from assistant.index.base import Bm25Params
from assistant.index.bm25_build import build_bm25
from assistant.index.flatfile import READ_FLAGS, DiskVectors, iter_flat_file
from assistant.index.local_rows import SqliteRows
from assistant.index.vectors import SLICE_ROWS, build_ann_from, set_ef_search
from assistant.settings import Settings
from assistant.types import StoreError

INDEX_TYPES = ("auto", "flat", "hnsw", "hnsw_sq8")


def resolve_index_type(index_type: str, n_vectors: int, threshold: int) -> str:
    """The index kind actually used: "flat", "hnsw" or "hnsw_sq8"."""
    if index_type not in INDEX_TYPES:
        raise StoreError(f"unknown index_type {index_type!r}; use one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        return "hnsw_sq8" if n_vectors >= threshold else "flat"
    return index_type


class GenerationCommits(SqliteRows):
    """`commit()` for `IndexStore` (the state it reads and resets is the store's own)."""

    folder: Path
    settings: Settings
    vectors: faiss.Index | DiskVectors
    ann: faiss.Index | None
    ann_kind: str
    _ann_mapped: bool
    _added: array[int]
    _removed: bool
    _in_tx: bool

    @property
    def generation(self) -> int:
        return int(self._meta().get("generation", 0))

    def commit(self) -> None:
        """Make every change since the last commit durable, atomically."""
        if not self._in_tx:
            return
        generation = self.generation + 1
        name = f"vectors-{generation:08d}.faiss"
        self._commit_vectors(name)
        # BM25 before the HNSW graph: its build memory is freed before the graph's is taken.
        bm25_name, bm25_params = self._commit_bm25(generation)
        ann_name, ann_kind = self._commit_ann(generation, self.folder / name)
        fsync_dir(self.folder)
        meta = self._meta()
        old = [meta.get("vectors_file", ""), meta.get("ann_file", ""), meta.get("bm25_dir", "")]
        self.db.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [("vectors_file", name), ("generation", str(generation)), ("ann_file", ann_name), ("ann_kind", ann_kind),
             ("bm25_dir", bm25_name), ("bm25_params", bm25_params)],
        )
        self.db.execute("COMMIT")
        self._in_tx = False
        self._added, self._removed = array("q"), False
        if isinstance(self.vectors, DiskVectors):  # the committed file now holds every change
            self.vectors.close()
            self.vectors = DiskVectors(self.folder, self.dim, self.folder / name)
        for stale in old:
            if stale and stale not in (name, ann_name, bm25_name):
                path = self.folder / stale
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def _commit_vectors(self, name: str) -> None:
        """Write the exact vectors of this generation: from memory, or streamed from disk."""
        if isinstance(self.vectors, DiskVectors):
            tmp = self.folder / f".{name}.tmp"
            self.vectors.write(tmp)
            os.replace(tmp, self.folder / name)
        else:
            self._write_index(self.vectors, name)

    def _write_index(self, index: faiss.Index, name: str) -> None:
        tmp = self.folder / f".{name}.tmp"
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / name)

    def _commit_ann(self, generation: int, vectors_file: Path) -> tuple[str, str]:
        """Write the approximate index for this generation when the index type asks for one.

        Additions extend the previous graph; a removal (HNSW cannot delete) rebuilds it from the
        generation's exact vectors file, read in slices. With the exact vectors on disk the writer
        then maps the written graph instead of keeping it in memory."""
        s = self.settings
        kind = resolve_index_type(s.index_type, int(self.vectors.ntotal), s.approx_threshold)
        if kind == "flat" or self.vectors.ntotal == 0:
            self.ann, self.ann_kind, self._ann_mapped = None, "flat", False
            return "", "flat"
        if self.ann is not None and self.ann_kind == kind and not self._removed:
            self._extend_ann()
        else:
            self.ann = build_ann_from(lambda: iter_flat_file(vectors_file), int(self.vectors.ntotal), self.dim,
                                      kind, s.hnsw_m, s.hnsw_ef_construction)
            self.ann_kind, self._ann_mapped = kind, False
        set_ef_search(self.ann, s.hnsw_ef_search)
        name = f"ann-{generation:08d}.faiss"
        self._write_index(self.ann, name)
        if isinstance(self.vectors, DiskVectors):
            self.ann = None  # free the built graph before mapping the written one
            self.ann, self._ann_mapped = faiss.read_index(str(self.folder / name), READ_FLAGS), True
            set_ef_search(self.ann, s.hnsw_ef_search)
        return name, kind

    def _extend_ann(self) -> None:
        """Add this transaction's vectors to the previous graph, a slice at a time."""
        assert self.ann is not None
        if self._ann_mapped:  # a mapped index cannot grow: read it into memory
            self.ann, self._ann_mapped = faiss.read_index(str(self.folder / self._meta()["ann_file"])), False
        for start in range(0, len(self._added), SLICE_ROWS):
            ids = np.asarray(self._added[start : start + SLICE_ROWS], dtype=np.int64)
            self.ann.add_with_ids(self.vectors.reconstruct_batch(ids), ids)

    def _commit_bm25(self, generation: int) -> tuple[str, str]:
        """Build and save the BM25 index of this generation, streamed from the stored chunk terms."""
        s = self.settings
        if self.db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None:
            return "", ""
        name = f"bm25-{generation:08d}"
        tmp = self.folder / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ids = array("q")

        def terms() -> Iterator[list[str]]:
            for chunk_id, chunk_terms in self.iter_lexical(s.bm25_title_weight):
                ids.append(chunk_id)
                yield chunk_terms

        build_bm25(terms(), s.bm25_k1, s.bm25_b, tmp)
        np.save(tmp / "chunk_ids.npy", np.frombuffer(ids, dtype=np.int64))
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp)
        shutil.rmtree(self.folder / name, ignore_errors=True)
        os.replace(tmp, self.folder / name)
        return name, Bm25Params.from_settings(s).key()
