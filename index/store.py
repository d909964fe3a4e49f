"""One index folder: `index.sqlite` (documents, chunks, chunk terms, chunk units: each chunk's answer
units' spans and float16 vectors, manifest), `vectors-<gen>.faiss`
(exact vectors, the source of truth), and per generation optionally `ann-<gen>.faiss` (an
approximate HNSW index, used for search once the index is large) and `bm25-<gen>/` (the BM25
index, so readers load it instead of rebuilding it).

Crash safety: changes go into one SQLite transaction and the writer's exact vectors (in memory, or
for a large index on disk: see `index/flatfile.py`). `commit()` writes the generation's files (temp,
fsync, rename), records their names in the same SQLite transaction, commits, then deletes the old files. A crash at any point leaves either the old
(files, rows) set or the new one, never a mix; a writer removes uncommitted leftovers on open.
One writer at a time: a second writer gets IndexLockedError instead of corrupting the index.

Index type (`Settings.index_type`): "flat" searches the exact vectors; "hnsw" / "hnsw_sq8" build
an HNSW graph (float32 / 8-bit scalar-quantized vectors); "auto" is flat below
`approx_threshold` vectors and hnsw_sq8 from there on. Readers memory-map the vector files.

Memory of a writer: past `IndexStore.max_memory_vector_bytes` of exact vectors it keeps them on disk
(`DiskVectors`), and a commit builds the HNSW graph and the BM25 index from slices of the written
files and a stream of stored terms, never from a full copy (1M x 384: under 2 GB instead of 8.3 GB).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO

import faiss
import numpy as np

from assistant.atomic import fsync_dir
from assistant.index.bm25_build import build_bm25
from assistant.index.flatfile import READ_FLAGS, SLICE_ROWS, DiskVectors, FlatFileError, iter_flat_file, read_layout
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import ChunkRecord, DocumentRecord, ModelMismatchError, StoreError

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
CREATE TABLE IF NOT EXISTS chunk_terms (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    terms TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_units (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    spans BLOB NOT NULL,
    vectors BLOB NOT NULL
);
"""

UnitRows = Sequence[tuple[np.ndarray, np.ndarray]]  # per chunk: (spans int32 (n, 2), vectors (n, dim))


def pack_units(spans: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[int, bytes, bytes]:
    """One chunk's units as stored: (n, int32 spans bytes, float16 vectors bytes)."""
    spans = np.ascontiguousarray(spans, dtype=np.int32).reshape(-1, 2)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    if len(spans) != len(vectors):
        raise StoreError(f"{len(spans)} unit spans but {len(vectors)} unit vectors")
    return len(spans), spans.tobytes(), np.ascontiguousarray(vectors, dtype=np.float16).tobytes()


def unpack_units(n: int, spans: bytes, vectors: bytes, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(spans int32 (n, 2), unit-length float32 vectors (n, dim)) from stored bytes."""
    s = np.frombuffer(spans, dtype=np.int32, count=2 * n).reshape(n, 2)
    v = np.frombuffer(vectors, dtype=np.float16, count=n * dim).reshape(n, dim).astype(np.float32)
    v /= np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)  # float16 rounding moves the length
    return s, v

INDEX_TYPES = ("auto", "flat", "hnsw", "hnsw_sq8")
_READ_FLAGS = READ_FLAGS
ANN_TRAIN_SAMPLE = 100_000  # vectors the 8-bit quantizer's ranges are trained on
RowSlices = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # each call: (vectors, ids) slices, in order


def resolve_index_type(index_type: str, n_vectors: int, threshold: int) -> str:
    """The index kind actually used: "flat", "hnsw" or "hnsw_sq8"."""
    if index_type not in INDEX_TYPES:
        raise StoreError(f"unknown index_type {index_type!r}; use one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        return "hnsw_sq8" if n_vectors >= threshold else "flat"
    return index_type


def _empty_ann(dim: int, kind: str, m: int, ef_construction: int) -> faiss.Index:
    inner: faiss.Index
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    elif kind == "hnsw_sq8":
        inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m,  # type: ignore[arg-type]
                                  faiss.METRIC_INNER_PRODUCT)
    else:
        raise StoreError(f"{kind!r} is not an approximate index type")
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


def _read_through(path: Path) -> None:
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


@lru_cache(maxsize=4096)
def _title_terms_cached(title: str) -> tuple[str, ...]:
    return tuple(content_terms(title))


def _title_terms(title: str) -> list[str]:
    return list(_title_terms_cached(title))


def bm25_params_key(k1: float, b: float, title_weight: int) -> str:
    return json.dumps({"k1": float(k1), "b": float(b), "title_weight": int(title_weight), "format": 1}, sort_keys=True)


class IndexLockedError(StoreError):
    pass


_CHUNK_SELECT = (
    'SELECT c.id, c.doc_id, c.ord, c.start, c."end", c.n_tokens, c.text, d.title, d.source '
    "FROM chunks c JOIN documents d ON d.id = c.doc_id"
)


class IndexStore:
    """Open with `IndexStore.open(folder, model_name, dim)`; use as a context manager.

    `settings` (default: `Settings.from_env()`) gives the index type, HNSW and BM25 parameters
    used when committing; readers take whatever the committed generation holds.
    """

    keyword_backend = "bm25s"  # the retriever runs BM25 (bm25s) over lexical_corpus() / bm25_files()
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
        self._has_units_table = False  # chunk_units exists (checked on first use: old indexes lack it)
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
            self.db.executescript(_SCHEMA)
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
            self.db.executescript(_SCHEMA)  # adds tables that older indexes lack (chunk_terms, chunk_units)

    def _meta(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}

    @property
    def generation(self) -> int:
        return int(self._meta().get("generation", 0))

    def _load_vectors(self) -> faiss.Index | DiskVectors:
        """The exact vectors (and the approximate index, into self.ann) of the committed generation.

        Readers memory-map the files (pages load on use); a writer reads them into memory, or for a
        large index keeps them on disk (`DiskVectors`) and maps the approximate index.
        """
        index: faiss.Index | DiskVectors
        flags = 0 if self.writable else _READ_FLAGS
        for _attempt in range(5):
            meta = self._meta()
            name, ann_name = meta.get("vectors_file", ""), meta.get("ann_file", "")
            if not name:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
                self.ann, self.ann_kind, self._ann_mapped = None, "flat", False
                break
            try:
                if ann_name and not self.writable:
                    _read_through(self.folder / ann_name)
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

    # -- lexical side -----------------------------------------------------------------------

    def bm25_files(self) -> tuple[Path | None, str]:
        """The committed generation's BM25 folder (or None) and the parameters it was built with."""
        meta = self._meta()
        name = meta.get("bm25_dir", "")
        return (self.folder / name if name else None), meta.get("bm25_params", "")

    def lexical_corpus(self, title_weight: int) -> tuple[list[int], list[str], list[list[str]]]:
        """(chunk ids, doc ids, BM25 term lists) in chunk id order: the title's terms `title_weight`
        times, then the chunk's stored terms (tokenized now for chunks stored without them)."""
        ids: list[int] = []
        docs: list[str] = []
        terms: list[list[str]] = []
        for chunk_id, doc_id, chunk_terms in self.iter_lexical(title_weight):
            ids.append(chunk_id)
            docs.append(doc_id)
            terms.append(chunk_terms)
        return ids, docs, terms

    def iter_lexical(self, title_weight: int) -> Iterator[tuple[int, str, list[str]]]:
        """(chunk id, doc id, BM25 terms) per chunk, in chunk id order, streamed from SQLite."""
        rows = self.db.execute(
            "SELECT c.id, c.doc_id, d.title, t.terms, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "LEFT JOIN chunk_terms t ON t.chunk_id = c.id ORDER BY c.id"
        ) if self._has_table("chunk_terms") else (
            (r[0], r[1], r[7], None, r[6]) for r in self.db.execute(f"{_CHUNK_SELECT} ORDER BY c.id"))
        last_doc, title_terms = None, []
        for chunk_id, doc_id, title, stored, text in rows:
            if doc_id != last_doc:  # a document's chunks have consecutive ids: one title at a time
                last_doc, title_terms = doc_id, (content_terms(title) if title_weight > 0 else [])
            body = stored.split() if stored is not None else content_terms(text)
            yield chunk_id, doc_id, title_terms * title_weight + body

    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]:
        """Per chunk id: its document id."""
        found: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(f"SELECT id, doc_id FROM chunks WHERE id IN ({marks})", part).fetchall())
        return found

    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]:
        """Per chunk id: the set of its BM25 terms (for near-duplicate checks)."""
        found: dict[int, frozenset[str]] = {}
        has_terms = self._has_table("chunk_terms")
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            sql = (f"SELECT c.id, d.title, {'t.terms' if has_terms else 'NULL'}, c.text FROM chunks c "
                   "JOIN documents d ON d.id = c.doc_id "
                   f"{'LEFT JOIN chunk_terms t ON t.chunk_id = c.id ' if has_terms else ''}WHERE c.id IN ({marks})")
            for chunk_id, title, stored, text in self.db.execute(sql, part):
                body = stored.split() if stored is not None else content_terms(text)
                found[chunk_id] = frozenset((_title_terms(title) if title_weight > 0 else []) + body)
        return found

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per chunk id with stored units: (absolute spans int32 (n, 2), float32 vectors (n, dim)).
        Chunks stored without units (before they existed, or by an embedder without them) are absent."""
        if not ids:
            return {}
        if not self._has_units_table:
            self._has_units_table = self._has_table("chunk_units")
            if not self._has_units_table:
                return {}
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            for chunk_id, n, spans, vectors in self.db.execute(
                    f"SELECT chunk_id, n, spans, vectors FROM chunk_units WHERE chunk_id IN ({marks})", part):
                found[chunk_id] = unpack_units(n, spans, vectors, self.dim)
        return found

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

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
        if units is not None and len(units) != len(chunks):
            raise StoreError(f"{doc.source}: {len(chunks)} chunks but units for {len(units)}")
        packed = [pack_units(spans, unit_vectors, self.dim) for spans, unit_vectors in units] if units is not None else None
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
            self.db.execute("INSERT INTO chunk_terms(chunk_id, terms) VALUES (?, ?)",
                            (cursor.lastrowid, " ".join(content_terms(text))))
        if packed is not None:
            self.db.executemany("INSERT INTO chunk_units(chunk_id, n, spans, vectors) VALUES (?, ?, ?, ?)",
                                [(chunk_id, *row) for chunk_id, row in zip(ids, packed, strict=True)])
        if len(ids) != len(vectors):
            raise StoreError(f"{doc.source}: {len(ids)} chunks but {len(vectors)} vectors")
        if ids:
            self.vectors.add_with_ids(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._added.extend(int(i) for i in ids if i is not None)
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
            for chunk_id, _doc_id, chunk_terms in self.iter_lexical(s.bm25_title_weight):
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
        return name, bm25_params_key(s.bm25_k1, s.bm25_b, s.bm25_title_weight)

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
