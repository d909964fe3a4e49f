"""The PostgreSQL store: documents, chunks, vectors (pgvector, HNSW) and the keyword side
(PostgreSQL full-text search) in one database, behind the same interface as `IndexStore`.

Selected with `--store postgresql://...` (setting `store`). Tables (created by `assistant db
migrate`, or by the first writer): `assistant_meta` (manifest: model, dim, schema version,
generation), `assistant_documents`, `assistant_chunks` (text, span, the chunk's terms, a `tsvector`
of title and chunk terms with a GIN index, and `embedding vector(dim)` with an HNSW index for
inner product), `assistant_chunk_units` (per chunk its answer units' spans and float16 vectors).
Put the tables in a schema of your own with `?options=-csearch_path%3Dmyschema`.

Schema and migration: `pg_schema.py`. Keyword side: PostgreSQL full-text search ranked in SQL
(`pg_keyword.py`, `keyword_rank` bm25 or ts_rank). Terms are our stemmed `content_terms` (title
terms `bm25_title_weight` times, then the chunk's) fed through the 'simple' configuration, so both
stores see the same words. Document frequencies and the average length are counted in PostgreSQL,
cached per generation.

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
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from assistant.index.base import Bm25Params, title_terms
from assistant.index.pg_keyword import PostgresKeywordIndex
from assistant.index.pg_schema import (
    check_manifest,
    connect,
    load_vectors_as_arrays,
    manifest,
    migrate,
    redact,
)
from assistant.index.unit_codec import UnitRows, pack_chunk_units, unpack_units
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import ChunkRecord, DocumentRecord, StoreError

_CHUNK_SELECT = (
    "SELECT c.id, c.doc_id, c.ord, c.start_char, c.end_char, c.n_tokens, c.text, d.title, d.source "
    "FROM assistant_chunks c JOIN assistant_documents d ON d.id = c.doc_id"
)
_DOC_SELECT = "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM assistant_documents"


def _as_array(value: Any) -> np.ndarray:
    """A pgvector value as float32 (pgvector's loader gives a `Vector` in recent versions)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


class PostgresStore:
    """Open with `PostgresStore.open(url, model_name, dim, writable)`; use as a context manager."""

    def __init__(self, url: str, model_name: str, dim: int, writable: bool, settings: Settings | None = None) -> None:
        self.url = url
        self.model_name = model_name
        self.dim = dim
        self.writable = writable
        self.settings = settings or Settings.from_env()
        if writable:
            migrate(url, model_name, dim, self.settings.embed_context)
        self.conn = connect(url)
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
            check_manifest(meta, url, model_name, dim)
            load_vectors_as_arrays(self.conn)
        except BaseException:
            self.conn.close()
            raise

    @classmethod
    def open(cls, url: str, model_name: str, dim: int, writable: bool = False,
             settings: Settings | None = None) -> PostgresStore:
        return cls(url, model_name, dim, writable, settings)

    def _connection(self) -> Any:
        """The writer's connection, or this thread's reader connection (opened on first use)."""
        if self.writable:
            return self.conn
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.url, vectors=True)
            with self._lock:
                self._readers.append(conn)
        return conn

    def _guard(self) -> Any:
        return self._lock if self.writable else contextlib.nullcontext()

    def _meta(self) -> dict[str, str]:
        with self._guard():
            return manifest(self._connection())

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

    def keyword_index(self, params: Bm25Params) -> PostgresKeywordIndex:
        """Full-text search of the committed rows, ranked in SQL (`pg_keyword`). The title's terms are
        in each chunk's `tsv` `bm25_title_weight` times as the writer's settings said."""
        return PostgresKeywordIndex(self._rows, params, self.settings.keyword_rank)

    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]:
        return dict(self._rows("SELECT id, doc_id FROM assistant_chunks WHERE id = ANY(%s)", ([int(i) for i in ids],)))

    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]:
        rows = self._rows("SELECT c.id, d.title, c.terms FROM assistant_chunks c JOIN assistant_documents d "
                          "ON d.id = c.doc_id WHERE c.id = ANY(%s)", ([int(i) for i in ids],))
        return {cid: frozenset((title_terms(title) if title_weight > 0 else []) + terms.split())
                for cid, title, terms in rows}

    # -- writing ----------------------------------------------------------------------------

    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray, units: UnitRows | None = None) -> None:
        """`Store.put_document`: the unit rows go to `assistant_chunk_units`, in the same transaction."""
        rows = list(chunks)
        if len(rows) != len(vectors):
            raise StoreError(f"{doc.source}: {len(rows)} chunks but {len(vectors)} vectors")
        packed = pack_chunk_units(units, len(rows), doc.source, self.dim)
        title_part = title_terms(doc.title) * max(self.settings.bm25_title_weight, 0)
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
                terms = title_part + content_terms(text)
                values.append((doc.id, ordinal, start, end, n_tokens, text, " ".join(terms[len(title_part):]),
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

    def _begin(self) -> None:
        """Open the write transaction, once (a read-only store refuses)."""
        if not self.writable:
            raise StoreError("store opened read-only")
        if self._in_tx:
            return
        self.conn.execute("BEGIN")
        self._in_tx = True

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
