"""One index folder: `index.sqlite` (documents, chunks, chunk terms, chunk units: each chunk's answer
units' spans and float16 vectors, manifest), `vectors-<gen>.faiss`
(exact vectors, the source of truth), and per generation optionally `ann-<gen>.faiss` (an
approximate HNSW index, used for search once the index is large) and `bm25-<gen>/` (the BM25
index, so readers load it instead of rebuilding it).

Crash safety: changes go into one SQLite transaction and the writer's exact vectors (in memory, or
for a large index on disk: see `index/flatfile.py`). `commit()` writes the generation's files (temp,
fsync, rename), records their names in the same SQLite transaction, commits, then deletes the old
files. A crash at any point leaves either the old (files, rows) set or the new one, never a mix; a
writer removes uncommitted leftovers on open. One writer at a time: a second writer gets IndexLockedError instead of corrupting the index.

Index type (`Settings.index_type`): "flat" searches the exact vectors; "hnsw" / "hnsw_sq8" build
an HNSW graph (float32 / 8-bit scalar-quantized vectors); "auto" is flat below
`approx_threshold` vectors and hnsw_sq8 from there on. Readers memory-map the vector files.

Memory of a writer: past `IndexStore.max_memory_vector_bytes` of exact vectors it keeps them on disk
(`DiskVectors`), and a commit builds the HNSW graph and the BM25 index from slices of the written
files and a stream of stored terms, never from a full copy (1M x 384: under 2 GB instead of 8.3 GB).

Parts: `local_rows.py` (the SQLite rows), `local_commit.py` (generation commits), `vectors.py`
(HNSW build and search), `lexical.py` (its BM25 keyword index); this module opens, locks and
searches the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import faiss
import numpy as np

from assistant.index.base import Bm25Params
from assistant.index.flatfile import READ_FLAGS, DiskVectors, FlatFileError, read_layout
from assistant.index.lexical import Bm25Index
from assistant.index.local_commit import GenerationCommits
from assistant.index.local_rows import SCHEMA, SCHEMA_VERSION
from assistant.index.unit_codec import UnitRows, pack_chunk_units
from assistant.index.vectors import read_through, search_vectors, set_ef_search
from assistant.settings import Settings
from assistant.types import DocumentRecord, ModelMismatchError, StoreError


class IndexLockedError(StoreError):
    pass


class IndexStore(GenerationCommits):
    """Open with `IndexStore.open(folder, model_name, dim)`; use as a context manager.

    `settings` (default: `Settings.from_env()`) gives the index type, HNSW and BM25 parameters
    used when committing; readers take whatever the committed generation holds.
    """

    # Past this many bytes of exact vectors (64 MB: 43,690 at 384 dims) a writer keeps them on disk.
    max_memory_vector_bytes = 64 * 2**20

    def __init__(self, folder: Path, model_name: str, dim: int, writable: bool,
                 settings: Settings | None = None) -> None:
        self.folder = folder
        self.model_name = model_name
        self.dim = dim
        self.writable = writable
        self.settings = settings or Settings.from_env()
        self._lock_handle: IO[str] | None = None
        self.ann: faiss.Index | None = None
        self.ann_kind = "flat"
        self._ann_mapped = False  # self.ann is a read-only mapping of the committed file
        self.vectors: faiss.Index | DiskVectors
        self._added = array("q")
        self._removed = False
        self._tables_seen: set[str] = set()
        if writable:
            self._acquire_lock()
        try:
            self.db = sqlite3.connect(folder / "index.sqlite", isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=10000")
            self._init_schema()
            self._in_tx = False
            self.vectors = self._load_vectors()
        except BaseException:
            self._release_lock()
            raise

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path | str, model_name: str, dim: int, writable: bool = False,
             settings: Settings | None = None) -> IndexStore:
        folder = Path(folder).expanduser()
        if writable:
            folder.mkdir(parents=True, exist_ok=True)
        elif not (folder / "index.sqlite").exists():
            raise StoreError(
                f"no index at {folder}: run `assistant ingest PATH` first (or pass --index-dir / set "
                "ASSISTANT_INDEX_DIR to an existing index)"
            )
        return cls(folder, model_name, dim, writable, settings)

    @staticmethod
    def read_manifest(folder: Path | str) -> dict[str, str]:
        """The manifest (model, dim, ...) without opening the vectors; {} when there is no index."""
        path = Path(folder).expanduser() / "index.sqlite"
        if not path.exists():
            return {}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}
        finally:
            db.close()

    def _acquire_lock(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / "write.lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise IndexLockedError(
                f"index is locked: another process ({holder or 'unknown'}) is writing to {self.folder}; "
                "wait for it to finish and try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_handle = handle

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _init_schema(self) -> None:
        meta = self._meta()
        if not meta:
            if not self.writable:
                raise StoreError(f"index at {self.folder} is empty: run `assistant ingest PATH` first")
            self.db.executescript(SCHEMA)
            now = json.dumps(time.time())
            self.db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("model", self.model_name), ("dim", str(self.dim)),
                 ("embed_context", self.settings.embed_context), ("generation", "0"), ("vectors_file", ""),
                 ("created_at", now)],
            )
            return
        if meta.get("model") != self.model_name or int(meta.get("dim", -1)) != self.dim:
            raise ModelMismatchError(
                f"index at {self.folder} was built with embedding model {meta.get('model')!r} "
                f"(dim {meta.get('dim')}), but {self.model_name!r} (dim {self.dim}) is configured. "
                f"Use --embedding-model {meta.get('model')!r}, or rebuild: delete {self.folder} (or pick a new "
                "--index-dir) and run `assistant ingest PATH` again"
            )
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            raise StoreError(f"index at {self.folder} has schema {meta.get('schema_version')}; rebuild it")
        if self.writable:
            self.db.executescript(SCHEMA)  # adds tables that older indexes lack (chunk_terms, chunk_units)

    def _load_vectors(self) -> faiss.Index | DiskVectors:
        """The exact vectors (and the approximate index, into self.ann) of the committed generation.

        Readers memory-map the files (pages load on use); a writer reads them into memory, or for a
        large index keeps them on disk (`DiskVectors`) and maps the approximate index.
        """
        index: faiss.Index | DiskVectors
        flags = 0 if self.writable else READ_FLAGS
        for _attempt in range(5):
            meta = self._meta()
            name, ann_name = meta.get("vectors_file", ""), meta.get("ann_file", "")
            if not name:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
                self.ann, self.ann_kind, self._ann_mapped = None, "flat", False
                break
            try:
                if ann_name and not self.writable:
                    read_through(self.folder / ann_name)
                on_disk = self.writable and self._too_big_for_memory(self.folder / name)
                index = (DiskVectors(self.folder, self.dim, self.folder / name) if on_disk
                         else faiss.read_index(str(self.folder / name), flags))
                ann_flags = READ_FLAGS if on_disk else flags
                self.ann = faiss.read_index(str(self.folder / ann_name), ann_flags) if ann_name else None
                self._ann_mapped = on_disk and self.ann is not None
                self.ann_kind = meta.get("ann_kind", "flat") if ann_name else "flat"
                break
            except RuntimeError:
                # A writer may have committed a newer generation and removed this file just now.
                time.sleep(0.05)
        else:
            raise StoreError(f"index at {self.folder} is missing {name}; rebuild it with `assistant ingest`")
        if self.ann is not None:
            set_ef_search(self.ann, self.settings.hnsw_ef_search)
        self._added, self._removed = array("q"), False
        if self.writable:
            self._remove_stale_files(keep={name, ann_name, meta.get("bm25_dir", "")})
        return index

    def _too_big_for_memory(self, path: Path) -> bool:
        try:
            layout = read_layout(path)
        except (OSError, FlatFileError):
            return False  # read_index reports a missing or unreadable file
        return layout.ntotal * layout.dim * 4 > self.max_memory_vector_bytes

    def _close_vectors(self) -> None:
        if isinstance(self.vectors, DiskVectors):
            self.vectors.close()

    def _remove_stale_files(self, keep: set[str]) -> None:
        for pattern in ("vectors-*.faiss*", "ann-*.faiss*", "bm25-*"):
            for path in self.folder.glob(pattern):
                if path.name not in keep:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for pattern in (".vectors-*.tmp", ".ann-*.tmp", ".bm25-*.tmp"):
            for path in self.folder.glob(pattern):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def reload_if_changed(self, generation: int) -> bool:
        """For readers: pick up a newer committed generation. True when something changed."""
        if self.generation == generation:
            return False
        self.vectors = self._load_vectors()
        return True

    # -- reading ----------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        docs, chunks = self.db.execute("SELECT COUNT(*), COALESCE(SUM(n_chunks), 0) FROM documents").fetchone()
        meta = self._meta()
        return {"store": str(self.folder), "index_dir": str(self.folder), "documents": docs, "chunks": chunks, "vectors": int(self.vectors.ntotal),
                "model": meta.get("model"), "dim": int(meta.get("dim", 0)), "generation": int(meta.get("generation", 0))}

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest chunks by inner product: from the approximate index when the generation has
        one (and nothing changed since; see `search_vectors`), else exact."""
        if self.vectors.ntotal == 0:
            return []
        ann = self.ann if self.ann is not None and not self._added and not self._removed else None
        return search_vectors(self.vectors, ann, query, k, self.settings.hnsw_ef_search, self.settings.ann_rerank)

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these chunk ids, in that order (KeyError for an unknown id)."""
        try:
            return self.vectors.reconstruct_batch(np.asarray(ids, dtype=np.int64))
        except RuntimeError as exc:
            raise KeyError(f"no vectors for some of chunk ids {list(ids)[:5]}") from exc

    def keyword_index(self, params: Bm25Params) -> Bm25Index:
        """BM25 of the committed generation: the one saved at commit when it was built with these
        parameters (memory-mapped), else built in memory from the stored chunk terms."""
        meta = self._meta()
        name = meta.get("bm25_dir", "")
        if name and meta.get("bm25_params", "") == params.key():
            try:
                return Bm25Index.load(self.folder / name)
            except (OSError, ValueError, KeyError):
                pass  # removed by a newer commit just now, or unreadable: build instead
        return self.keyword_corpus(params.title_weight).bm25(params.k1, params.b)

    # -- writing ----------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self.writable:
            raise StoreError("index opened read-only")
        if not self._in_tx:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray, units: UnitRows | None = None) -> None:
        """Insert or replace one document with its chunks (ord, start, end, n_tokens, text) and vectors;
        `units`, one per chunk: (absolute spans int32 (n, 2), vectors (n, dim)), stored as int32 and
        float16 bytes in `chunk_units` (same transaction; removed with their chunk)."""
        chunks = list(chunks)
        packed = pack_chunk_units(units, len(chunks), doc.source, self.dim)
        self._begin()
        self._delete_chunks(doc.id)
        ids = self._insert_rows(doc, chunks, packed)
        if len(ids) != len(vectors):
            raise StoreError(f"{doc.source}: {len(ids)} chunks but {len(vectors)} vectors")
        if ids:
            self.vectors.add_with_ids(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._added.extend(ids)
            self._move_vectors_to_disk_if_big()

    def _move_vectors_to_disk_if_big(self) -> None:
        """Once the in-memory exact vectors pass max_memory_vector_bytes, keep them on disk instead."""
        if not isinstance(self.vectors, DiskVectors) and \
                self.vectors.ntotal * self.dim * 4 > self.max_memory_vector_bytes:
            self.vectors = DiskVectors.spilled_from(self.folder, self.vectors)

    def remove_document(self, doc_id: str) -> bool:
        self._begin()
        self._delete_chunks(doc_id)
        return self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0

    def _delete_chunks(self, doc_id: str) -> None:
        old = [row[0] for row in self.db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        if old:
            self.vectors.remove_ids(np.asarray(old, dtype=np.int64))  # type: ignore[arg-type]
            self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            self._removed = True

    def rollback(self) -> None:
        if self._in_tx:
            self.db.execute("ROLLBACK")
            self._in_tx = False
            self._close_vectors()
            self.vectors = self._load_vectors()

    def close(self) -> None:
        self.rollback()
        self._close_vectors()
        self.db.close()
        self._release_lock()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
