"""The PostgreSQL store: documents, chunks, vectors (pgvector, HNSW) and the keyword side
(PostgreSQL full-text search) in one database, behind the same interface as `IndexStore`.

Selected with `--store postgresql://...` (setting `store`). Tables (created by `assistant db
migrate`, or by the first writer): `assistant_meta` (manifest: model, dim, schema version,
generation), `assistant_documents`, `assistant_chunks` (text, span, the chunk's terms, a `tsvector`
of title and chunk terms with a GIN index, and `embedding vector(dim)` with an HNSW index for
inner product), `assistant_chunk_units` (per chunk its answer units' spans and float16 vectors).
Put the tables in a schema of your own with `?options=-csearch_path%3Dmyschema`.

Keyword side: PostgreSQL full-text search (the GIN index finds the chunks with any query term),
ranked by `keyword_rank`: "bm25" (default) computes BM25 in SQL from each chunk's stored term
counts (`tf`), its length in terms and the idf (the same Lucene formula bm25s uses in the local
store, so both stores rank alike); "ts_rank" uses PostgreSQL's `ts_rank` (normalized by length)
weighted by idf. Terms are our stemmed `content_terms` (title terms `bm25_title_weight` times, then
the chunk's) fed through the 'simple' configuration, so both stores see the same words. Document
frequencies and the average length are counted in PostgreSQL, cached per generation.

Concurrency: any number of readers and writers; a read-only store opens one connection per
thread that uses it (a server answers on several threads). A writer's changes are one transaction per
`commit()`; two writers touching the same document serialize on an advisory lock on its source
instead of failing, so concurrent ingests lose nothing. `generation` counts commits, so readers
refresh their cached term statistics when it moves.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from assistant.index.store import (
    UnitRows,
    _title_terms,
    pack_units,
    unpack_units,
)
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import ChunkRecord, DocumentRecord, ModelMismatchError, StoreError

SCHEMA_VERSION = 1
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres_url(store: str) -> bool:
    return store.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and stats."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def schema_sql(dim: int) -> list[str]:
    """The DDL of schema version 1 (idempotent)."""
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE TABLE IF NOT EXISTS assistant_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS assistant_documents (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            size BIGINT NOT NULL,
            n_chunks INTEGER NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS assistant_chunks (
            id BIGSERIAL PRIMARY KEY,
            doc_id TEXT NOT NULL REFERENCES assistant_documents(id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            terms TEXT NOT NULL,
            n_terms INTEGER NOT NULL,
            tf JSONB NOT NULL,
            tsv TSVECTOR NOT NULL,
            embedding VECTOR({int(dim)}) NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS assistant_chunks_doc ON assistant_chunks (doc_id, ord)",
        "CREATE INDEX IF NOT EXISTS assistant_chunks_tsv ON assistant_chunks USING gin (tsv)",
        "CREATE INDEX IF NOT EXISTS assistant_chunks_embedding ON assistant_chunks "
        "USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64)",
        # Added later (same schema version: older databases get it from `db migrate` or their next writer).
        """CREATE TABLE IF NOT EXISTS assistant_chunk_units (
            chunk_id BIGINT PRIMARY KEY REFERENCES assistant_chunks(id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            spans BYTEA NOT NULL,
            vectors BYTEA NOT NULL)""",
    ]


def _connect(url: str, vectors: bool = False) -> Any:
    """An autocommit connection; with `vectors`, pgvector values load as arrays (the extension must
    exist by then, so the store registers them only after checking the manifest)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreError("the PostgreSQL store needs `pip install 'psycopg[binary]' pgvector`") from exc
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {str(exc).strip()}. Check the --store "
                         "URL (postgresql://user:password@host:port/database) and that the server runs") from None
    return _load_vectors_as_arrays(conn) if vectors else conn


def _load_vectors_as_arrays(conn: Any) -> Any:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    return conn


def _manifest(conn: Any) -> dict[str, str]:
    """The manifest rows; {} when the tables do not exist yet."""
    if conn.execute("SELECT to_regclass('assistant_meta')").fetchone()[0] is None:
        return {}
    return dict(conn.execute("SELECT key, value FROM assistant_meta").fetchall())


def migrate(url: str, model_name: str, dim: int, embed_context: str = "title") -> dict[str, str]:
    """Create (or bring up to date) the tables and record the manifest; returns the manifest.
    `embed_context` (Settings.embed_context) is recorded when the tables are created, not changed after.

    Refuses a database whose manifest names another embedding model or dimension."""
    conn = _connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('assistant_migrate'))")
            for statement in schema_sql(dim):
                conn.execute(statement)
            meta = _manifest(conn)
            if meta:
                _check_manifest(meta, url, model_name, dim)
            else:
                conn.execute(
                    "INSERT INTO assistant_meta(key, value) VALUES ('schema_version', %s), ('model', %s), "
                    "('dim', %s), ('embed_context', %s), ('generation', '0'), ('created_at', %s)",
                    (str(SCHEMA_VERSION), model_name, str(dim), embed_context, json.dumps(time.time())),
                )
            return _manifest(conn)
    finally:
        conn.close()


def read_manifest(url: str) -> dict[str, str]:
    """The manifest without touching the rest; {} when the tables do not exist yet."""
    conn = _connect(url)
    try:
        return _manifest(conn)
    finally:
        conn.close()


def _check_manifest(meta: dict[str, str], url: str, model_name: str, dim: int) -> None:
    if meta.get("model") != model_name or int(meta.get("dim", -1)) != dim:
        raise ModelMismatchError(
            f"store {redact(url)} was built with embedding model {meta.get('model')!r} (dim {meta.get('dim')}), "
            f"but {model_name!r} (dim {dim}) is configured. Use --embedding-model {meta.get('model')!r}, or "
            "point --store at another database/schema and ingest again"
        )
    if int(meta.get("schema_version", 0)) > SCHEMA_VERSION:
        raise StoreError(f"store {redact(url)} has schema {meta.get('schema_version')}, newer than this "
                         f"version of assistant understands ({SCHEMA_VERSION}); upgrade assistant")


_CHUNK_SELECT = (
    "SELECT c.id, c.doc_id, c.ord, c.start_char, c.end_char, c.n_tokens, c.text, d.title, d.source "
    "FROM assistant_chunks c JOIN assistant_documents d ON d.id = c.doc_id"
)
_DOC_SELECT = "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM assistant_documents"

_QUERY_TERMS = """
WITH q AS (
    SELECT t.term, plainto_tsquery('simple', t.term) AS query, t.idf
    FROM unnest(%(terms)s::text[], %(idfs)s::float8[]) AS t(term, idf)
)
"""
# BM25 (Lucene variant, as bm25s): idf x tf / (tf + k1 (1 - b + b dl / avgdl)), tf from the stored
# term counts (4x faster than unnesting the tsvector's positions on SciFact).
_BM25_SQL = _QUERY_TERMS + """
SELECT c.id, sum(q.idf * f.tf / (f.tf + %(k1)s * (1 - %(b)s + %(b)s * c.n_terms / %(avgdl)s))) AS score
FROM q JOIN assistant_chunks c ON c.tsv @@ q.query
CROSS JOIN LATERAL (SELECT coalesce((c.tf ->> q.term)::float8, 1) AS tf) AS f
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""
# PostgreSQL's ts_rank per term (normalization 1: divided by 1 + log(length)) x idf, summed.
_TS_RANK_SQL = _QUERY_TERMS + """
SELECT c.id, sum(q.idf * ts_rank(c.tsv, q.query, 1)) AS score
FROM q JOIN assistant_chunks c ON c.tsv @@ q.query
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""
KEYWORD_RANKS = {"bm25": _BM25_SQL, "ts_rank": _TS_RANK_SQL}


def _as_array(value: Any) -> np.ndarray:
    """A pgvector value as float32 (pgvector's loader gives a `Vector` in recent versions)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


class LazyDocumentFrequency:
    """`df.get(term, 0)` for the answerer's idf, counted in PostgreSQL on first use and cached; also
    the chunk count and average chunk length (in terms) of the generation it was made for."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._cache: dict[str, int] = {}
        self.n_chunks, self.avg_terms = store.corpus_size()

    def get(self, term: str, default: int = 0) -> int:
        if term not in self._cache:
            self._cache.update(self._store.document_frequencies([term]))
        return self._cache.get(term, default)

    def prefetch(self, terms: Iterable[str]) -> None:
        missing = sorted({t for t in terms if t not in self._cache})
        if missing:
            self._cache.update(self._store.document_frequencies(missing))


class PostgresStore:
    """Open with `PostgresStore.open(url, model_name, dim, writable)`; use as a context manager."""

    keyword_backend = "postgres"

    def __init__(self, url: str, model_name: str, dim: int, writable: bool, settings: Settings | None = None) -> None:
        self.url = url
        self.model_name = model_name
        self.dim = dim
        self.writable = writable
        self.settings = settings or Settings.from_env()
        self.folder = redact(url)  # what messages name as "the index"
        if writable:
            migrate(url, model_name, dim, self.settings.embed_context)
        self.conn = _connect(url)
        self._lock = threading.RLock()  # the writer's one connection (its transaction) is shared
        self._in_tx = False
        self._has_units_table = False  # assistant_chunk_units exists (checked on first use)
        # Readers (a server answering on several threads) get a connection per thread, so queries
        # run in parallel instead of queueing on one connection.
        self._local = threading.local()
        self._readers: list[Any] = []
        self._local.conn = self.conn
        try:
            meta = self._meta()
            if not meta:
                raise StoreError(f"no index in {redact(url)}: run `assistant --store URL db migrate` and "
                                 "`assistant --store URL ingest PATH` first")
            _check_manifest(meta, url, model_name, dim)
            _load_vectors_as_arrays(self.conn)
        except BaseException:
            self.conn.close()
            raise

    @classmethod
    def open(cls, url: str, model_name: str, dim: int, writable: bool = False,
             settings: Settings | None = None) -> PostgresStore:
        return cls(url, model_name, dim, writable, settings)

    @staticmethod
    def read_manifest(url: str) -> dict[str, str]:
        return read_manifest(url)

    def _connection(self) -> Any:
        """The writer's connection, or this thread's reader connection (opened on first use)."""
        if self.writable:
            return self.conn
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.url, vectors=True)
            with self._lock:
                self._readers.append(conn)
        return conn

    def _guard(self) -> Any:
        return self._lock if self.writable else contextlib.nullcontext()

    def _meta(self) -> dict[str, str]:
        with self._guard():
            return _manifest(self._connection())

    def _rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._guard():
            return list(self._connection().execute(sql, params).fetchall())

    @property
    def generation(self) -> int:
        rows = self._rows("SELECT value FROM assistant_meta WHERE key = 'generation'")
        return int(rows[0][0]) if rows else 0

    def reload_if_changed(self, generation: int) -> bool:
        """Nothing to reload: every query reads the committed rows."""
        return self.generation != generation

    # -- reading ----------------------------------------------------------------------------

    def documents(self) -> list[DocumentRecord]:
        return [DocumentRecord(*row) for row in self._rows(f"{_DOC_SELECT} ORDER BY source")]

    def document(self, doc_id: str) -> DocumentRecord | None:
        rows = self._rows(f"{_DOC_SELECT} WHERE id = %s", (doc_id,))
        return DocumentRecord(*rows[0]) if rows else None

    def document_by_source(self, source: str) -> DocumentRecord | None:
        rows = self._rows(f"{_DOC_SELECT} WHERE source = %s", (source,))
        return DocumentRecord(*rows[0]) if rows else None

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        rows = self._rows(f"{_CHUNK_SELECT} WHERE c.id = ANY(%s)", ([int(i) for i in ids],))
        return {row[0]: ChunkRecord(*row) for row in rows}

    def document_chunks(self, doc_id: str, start: int = 0, end: int | None = None) -> list[ChunkRecord]:
        rows = self._rows(f"{_CHUNK_SELECT} WHERE c.doc_id = %s AND c.end_char > %s AND c.start_char < %s ORDER BY c.ord",
                          (doc_id, start, end if end is not None else 2**62))
        return [ChunkRecord(*row) for row in rows]

    def iter_chunks(self) -> Iterator[ChunkRecord]:
        last = 0
        while True:
            rows = self._rows(f"{_CHUNK_SELECT} WHERE c.id > %s ORDER BY c.id LIMIT 5000", (last,))
            if not rows:
                return
            yield from (ChunkRecord(*row) for row in rows)
            last = rows[-1][0]

    def stats(self) -> dict[str, object]:
        docs, chunks = self._rows("SELECT COUNT(*), COALESCE(SUM(n_chunks), 0) FROM assistant_documents")[0]
        n_vectors = self._rows("SELECT COUNT(*) FROM assistant_chunks")[0][0]
        meta = self._meta()
        return {"store": redact(self.url), "documents": int(docs), "chunks": int(chunks), "vectors": int(n_vectors),
                "model": meta.get("model"), "dim": int(meta.get("dim", 0)),
                "generation": int(meta.get("generation", 0))}

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest chunks by inner product, from the HNSW index (ef_search at least k)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        ef = min(max(self.settings.hnsw_ef_search, k), 1000)
        with self._guard():
            conn = self._connection()
            with conn.transaction():
                # From a LIMIT of a few hundred rows the planner prefers a sequential scan and a sort
                # over the HNSW index (SciFact, 14k chunks: 62 ms at k 400 against 4.4 ms through the
                # index), so this one query is told to use the index.
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                rows = conn.execute(
                    "SELECT id, -(embedding <#> %s) FROM assistant_chunks ORDER BY embedding <#> %s LIMIT %s",
                    (q, q, int(k)),
                ).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these chunk ids, in that order (KeyError for an unknown id)."""
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        rows = dict(self._rows("SELECT id, embedding FROM assistant_chunks WHERE id = ANY(%s)", ([int(i) for i in ids],)))
        missing = [i for i in ids if int(i) not in rows]
        if missing:
            raise KeyError(f"no vectors for chunk ids {missing[:5]}")
        return np.stack([_as_array(rows[int(i)]) for i in ids])

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per chunk id with stored units: (absolute spans int32 (n, 2), float32 vectors (n, dim)).
        Chunks stored without units are absent; {} from a database not yet migrated to units."""
        if not ids:
            return {}
        if not self._has_units_table:
            self._has_units_table = self._rows("SELECT to_regclass('assistant_chunk_units')")[0][0] is not None
            if not self._has_units_table:
                return {}
        rows = self._rows("SELECT chunk_id, n, spans, vectors FROM assistant_chunk_units WHERE chunk_id = ANY(%s)",
                          ([int(i) for i in ids],))
        return {int(cid): unpack_units(int(n), bytes(spans), bytes(vectors), self.dim) for cid, n, spans, vectors in rows}

    # -- keyword side -----------------------------------------------------------------------

    def corpus_size(self) -> tuple[int, float]:
        """(chunks, average terms per chunk)."""
        n, avg = self._rows("SELECT COUNT(*), COALESCE(AVG(n_terms), 0) FROM assistant_chunks")[0]
        return int(n), float(avg)

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """Chunks containing each term (title or text)."""
        if not terms:
            return {}
        rows = self._rows(
            "SELECT t.term, (SELECT COUNT(*) FROM assistant_chunks c WHERE c.tsv @@ plainto_tsquery('simple', t.term)) "
            "FROM unnest(%s::text[]) AS t(term)", (list(terms),))
        return {term: int(n) for term, n in rows}

    def keyword_search(self, terms: Sequence[str], k: int,
                       df: LazyDocumentFrequency | None = None) -> list[tuple[int, float]]:
        """Chunks with any of the (stemmed) terms, best first, ranked as `settings.keyword_rank` says."""
        s = self.settings
        if s.keyword_rank not in KEYWORD_RANKS:
            raise ValueError(f"unknown keyword_rank {s.keyword_rank!r}; use one of {', '.join(KEYWORD_RANKS)}")
        unique = list(dict.fromkeys(t for t in terms if t))
        if not unique or k <= 0:
            return []
        df = df or LazyDocumentFrequency(self)
        df.prefetch(unique)
        n = df.n_chunks
        idfs = [float(np.log(1.0 + (n - df.get(t) + 0.5) / (df.get(t) + 0.5))) for t in unique]
        rows = self._rows(KEYWORD_RANKS[s.keyword_rank], {"terms": unique, "idfs": idfs, "k": int(k), "k1": s.bm25_k1,
                                                          "b": s.bm25_b, "avgdl": max(df.avg_terms, 1e-9)})
        return [(int(i), float(score)) for i, score in rows if score > 0]

    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]:
        return dict(self._rows("SELECT id, doc_id FROM assistant_chunks WHERE id = ANY(%s)", ([int(i) for i in ids],)))

    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]:
        rows = self._rows("SELECT c.id, d.title, c.terms FROM assistant_chunks c JOIN assistant_documents d "
                          "ON d.id = c.doc_id WHERE c.id = ANY(%s)", ([int(i) for i in ids],))
        return {cid: frozenset((_title_terms(title) if title_weight > 0 else []) + terms.split())
                for cid, title, terms in rows}

    # -- writing ----------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self.writable:
            raise StoreError("store opened read-only")
        if not self._in_tx:
            self.conn.execute("BEGIN")
            self._in_tx = True

    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray, units: UnitRows | None = None) -> None:
        """Insert or replace one document with its chunks (ord, start, end, n_tokens, text) and vectors;
        `units`, one per chunk: (absolute spans int32 (n, 2), vectors (n, dim)), stored as int32 and
        float16 bytes in `assistant_chunk_units` (same transaction; removed with their chunk)."""
        rows = list(chunks)
        if len(rows) != len(vectors):
            raise StoreError(f"{doc.source}: {len(rows)} chunks but {len(vectors)} vectors")
        if units is not None and len(units) != len(rows):
            raise StoreError(f"{doc.source}: {len(rows)} chunks but units for {len(units)}")
        packed = [pack_units(spans, unit_vectors, self.dim) for spans, unit_vectors in units] if units is not None else None
        title_terms = content_terms(doc.title) * max(self.settings.bm25_title_weight, 0)
        with self._lock:
            self._begin()
            # A second writer replacing the same document waits here for the first one's commit.
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (doc.source,))
            self.conn.execute("DELETE FROM assistant_documents WHERE id = %s OR source = %s", (doc.id, doc.source))
            self.conn.execute(
                "INSERT INTO assistant_documents(id, source, title, content_hash, size, n_chunks, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (doc.id, doc.source, doc.title, doc.content_hash, doc.size, doc.n_chunks, doc.updated_at),
            )
            values = []
            for (ordinal, start, end, n_tokens, text), vector in zip(rows, vectors, strict=True):
                terms = title_terms + content_terms(text)
                values.append((doc.id, ordinal, start, end, n_tokens, text, " ".join(terms[len(title_terms):]),
                               len(terms), json.dumps(Counter(terms)), " ".join(terms),
                               np.asarray(vector, dtype=np.float32)))
            if values:
                with self.conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO assistant_chunks(doc_id, ord, start_char, end_char, n_tokens, text, terms, "
                        "n_terms, tf, tsv, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        "to_tsvector('simple', %s), %s)" + (" RETURNING id" if packed is not None else ""),
                        values, returning=packed is not None)
                    if packed is not None:
                        ids = []
                        while True:  # one result set per inserted row, in order
                            ids.append(cursor.fetchone()[0])
                            if not cursor.nextset():
                                break
                        cursor.executemany("INSERT INTO assistant_chunk_units(chunk_id, n, spans, vectors) "
                                           "VALUES (%s, %s, %s, %s)",
                                           [(cid, *row) for cid, row in zip(ids, packed, strict=True)])

    def remove_document(self, doc_id: str) -> bool:
        with self._lock:
            self._begin()
            cursor = self.conn.execute("DELETE FROM assistant_documents WHERE id = %s", (doc_id,))
            return bool(cursor.rowcount)

    def commit(self) -> None:
        """Make every change since the last commit durable, atomically, and count a generation."""
        with self._lock:
            if not self._in_tx:
                return
            self.conn.execute("UPDATE assistant_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")
            self.conn.execute("COMMIT")
            self._in_tx = False

    def rollback(self) -> None:
        with self._lock:
            if self._in_tx:
                self.conn.execute("ROLLBACK")
                self._in_tx = False

    def close(self) -> None:
        try:
            self.rollback()
        finally:
            self.conn.close()
            with self._lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
