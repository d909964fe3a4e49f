"""One index folder: `index.sqlite` (documents, chunks, manifest) + `vectors-<gen>.faiss`.

Crash safety: changes go into one SQLite transaction and the in-memory FAISS index. `commit()`
writes the FAISS index to a new generation file (temp, fsync, rename), records that file name
in the same SQLite transaction, commits, then deletes the old file. A crash at any point leaves
either the old (file, rows) pair or the new one, never a mix. One writer at a time: a second
writer gets IndexLockedError instead of corrupting the index.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import faiss
import numpy as np

from assistant.atomic import fsync_dir

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    n_chunks INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ord);
"""


class StoreError(Exception):
    """The index cannot be used as asked; the message says why and what to do."""


class ModelMismatchError(StoreError):
    pass


class IndexLockedError(StoreError):
    pass


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    source: str
    title: str
    content_hash: str
    size: int
    n_chunks: int
    updated_at: float


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    doc_id: str
    ord: int
    start: int
    end: int
    n_tokens: int
    text: str
    title: str
    source: str


_CHUNK_SELECT = (
    'SELECT c.id, c.doc_id, c.ord, c.start, c."end", c.n_tokens, c.text, d.title, d.source '
    "FROM chunks c JOIN documents d ON d.id = c.doc_id"
)


class IndexStore:
    """Open with `IndexStore.open(folder, model_name, dim)`; use as a context manager."""

    def __init__(self, folder: Path, model_name: str, dim: int, writable: bool) -> None:
        self.folder = folder
        self.model_name = model_name
        self.dim = dim
        self.writable = writable
        self._lock_handle: IO[str] | None = None
        if writable:
            self._acquire_lock()
        try:
            self.db = sqlite3.connect(folder / "index.sqlite", isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=10000")
            self._init_schema()
            self.vectors = self._load_vectors()
            self._in_tx = False
        except BaseException:
            self._release_lock()
            raise

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path | str, model_name: str, dim: int, writable: bool = False) -> IndexStore:
        folder = Path(folder).expanduser()
        if writable:
            folder.mkdir(parents=True, exist_ok=True)
        elif not (folder / "index.sqlite").exists():
            raise StoreError(
                f"no index at {folder}: run `assistant ingest PATH` first (or pass --index-dir / set "
                "ASSISTANT_INDEX_DIR to an existing index)"
            )
        return cls(folder, model_name, dim, writable)

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
            self.db.executescript(_SCHEMA)
            now = json.dumps(time.time())
            self.db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("model", self.model_name), ("dim", str(self.dim)),
                 ("generation", "0"), ("vectors_file", ""), ("created_at", now)],
            )
            return
        if meta.get("model") != self.model_name or int(meta.get("dim", -1)) != self.dim:
            raise ModelMismatchError(
                f"index at {self.folder} was built with embedding model {meta.get('model')!r} "
                f"(dim {meta.get('dim')}), but {self.model_name!r} (dim {self.dim}) is configured. "
                f"Use --model {meta.get('model')!r}, or rebuild: delete {self.folder} (or pick a new "
                "--index-dir) and run `assistant ingest PATH` again"
            )
        if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
            raise StoreError(f"index at {self.folder} has schema {meta.get('schema_version')}; rebuild it")

    def _meta(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}

    @property
    def generation(self) -> int:
        return int(self._meta().get("generation", 0))

    def _load_vectors(self) -> faiss.Index:
        index: faiss.Index
        for _attempt in range(5):
            name = self._meta().get("vectors_file", "")
            if not name:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
                break
            try:
                index = faiss.read_index(str(self.folder / name))
                break
            except RuntimeError:
                # A writer may have committed a newer generation and removed this file just now.
                time.sleep(0.05)
        else:
            raise StoreError(f"index at {self.folder} is missing {name}; rebuild it with `assistant ingest`")
        if self.writable:
            self._remove_stale_files(keep=name)
        return index

    def _remove_stale_files(self, keep: str) -> None:
        for path in self.folder.glob("vectors-*.faiss*"):
            if path.name != keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(".vectors-*.tmp"):
            path.unlink(missing_ok=True)

    def reload_if_changed(self, generation: int) -> bool:
        """For readers: pick up a newer committed generation. True when something changed."""
        if self.generation == generation:
            return False
        self.vectors = self._load_vectors()
        return True

    # -- reading ----------------------------------------------------------------------------

    def documents(self) -> list[DocumentRecord]:
        rows = self.db.execute(
            "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM documents ORDER BY source"
        ).fetchall()
        return [DocumentRecord(*row) for row in rows]

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self.db.execute(
            "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM documents WHERE id = ?",
            (doc_id,),
        ).fetchone()
        return DocumentRecord(*row) if row else None

    def document_by_source(self, source: str) -> DocumentRecord | None:
        row = self.db.execute(
            "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM documents WHERE source = ?",
            (source,),
        ).fetchone()
        return DocumentRecord(*row) if row else None

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        found: dict[int, ChunkRecord] = {}
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            for row in self.db.execute(f"{_CHUNK_SELECT} WHERE c.id IN ({marks})", part):
                found[row[0]] = ChunkRecord(*row)
        return found

    def document_chunks(self, doc_id: str, start: int = 0, end: int | None = None) -> list[ChunkRecord]:
        """A document's chunks overlapping characters [start, end), in order (for previews)."""
        rows = self.db.execute(
            f'{_CHUNK_SELECT} WHERE c.doc_id = ? AND c."end" > ? AND c.start < ? ORDER BY c.ord',
            (doc_id, start, end if end is not None else 2**62),
        ).fetchall()
        return [ChunkRecord(*row) for row in rows]

    def iter_chunks(self) -> Iterator[ChunkRecord]:
        yield from (ChunkRecord(*row) for row in self.db.execute(f"{_CHUNK_SELECT} ORDER BY c.id"))

    def stats(self) -> dict[str, object]:
        docs, chunks = self.db.execute("SELECT COUNT(*), COALESCE(SUM(n_chunks), 0) FROM documents").fetchone()
        meta = self._meta()
        return {"index_dir": str(self.folder), "documents": docs, "chunks": chunks, "vectors": int(self.vectors.ntotal),
                "model": meta.get("model"), "dim": int(meta.get("dim", 0)), "generation": int(meta.get("generation", 0))}

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        if self.vectors.ntotal == 0:
            return []
        scores, ids = self.vectors.search(np.asarray(query, dtype=np.float32).reshape(1, -1), min(k, self.vectors.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]

    # -- writing ----------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self.writable:
            raise StoreError("index opened read-only")
        if not self._in_tx:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray) -> None:
        """Insert or replace one document with its chunks (ord, start, end, n_tokens, text) and vectors."""
        self._begin()
        self._delete_chunks(doc.id)
        self.db.execute("DELETE FROM documents WHERE id = ? OR source = ?", (doc.id, doc.source))
        self.db.execute(
            "INSERT INTO documents(id, source, title, content_hash, size, n_chunks, updated_at) VALUES (?,?,?,?,?,?,?)",
            (doc.id, doc.source, doc.title, doc.content_hash, doc.size, doc.n_chunks, doc.updated_at),
        )
        ids = []
        for ordinal, start, end, n_tokens, text in chunks:
            cursor = self.db.execute(
                'INSERT INTO chunks(doc_id, ord, start, "end", n_tokens, text) VALUES (?,?,?,?,?,?)',
                (doc.id, ordinal, start, end, n_tokens, text),
            )
            ids.append(cursor.lastrowid)
        if len(ids) != len(vectors):
            raise StoreError(f"{doc.source}: {len(ids)} chunks but {len(vectors)} vectors")
        if ids:
            self.vectors.add_with_ids(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove_document(self, doc_id: str) -> bool:
        self._begin()
        self._delete_chunks(doc_id)
        return self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0

    def _delete_chunks(self, doc_id: str) -> None:
        old = [row[0] for row in self.db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        if old:
            self.vectors.remove_ids(np.asarray(old, dtype=np.int64))  # type: ignore[arg-type]
            self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))

    def commit(self) -> None:
        """Make every change since the last commit durable, atomically."""
        if not self._in_tx:
            return
        generation = self.generation + 1
        name = f"vectors-{generation:08d}.faiss"
        tmp = self.folder / f".{name}.tmp"
        faiss.write_index(self.vectors, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / name)
        fsync_dir(self.folder)
        old = self._meta().get("vectors_file", "")
        self.db.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [("vectors_file", name), ("generation", str(generation))],
        )
        self.db.execute("COMMIT")
        self._in_tx = False
        if old:
            (self.folder / old).unlink(missing_ok=True)

    def rollback(self) -> None:
        if self._in_tx:
            self.db.execute("ROLLBACK")
            self._in_tx = False
            self.vectors = self._load_vectors()

    def close(self) -> None:
        self.rollback()
        self.db.close()
        self._release_lock()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
