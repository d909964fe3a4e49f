"""The local store's rows in `index.sqlite`: documents, chunks, chunk terms, chunk units, manifest.

`SqliteRows` reads them and writes a document's rows; `IndexStore` (store.py) adds the vectors,
the keyword index, the write lock and atomic generation commits on top.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import numpy as np

from assistant.index.base import title_terms
from assistant.index.lexical import KeywordCorpus
from assistant.index.unit_codec import unpack_units
from assistant.text import content_terms
from assistant.types import ChunkRecord, DocumentRecord

SCHEMA_VERSION = 1

SCHEMA = """
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

_CHUNK_SELECT = (
    'SELECT c.id, c.doc_id, c.ord, c.start, c."end", c.n_tokens, c.text, d.title, d.source '
    "FROM chunks c JOIN documents d ON d.id = c.doc_id"
)


_DOC_SELECT = "SELECT id, source, title, content_hash, size, n_chunks, updated_at FROM documents"


def _id_batches(ids: Sequence[int], size: int = 500) -> Iterator[tuple[list[int], str]]:
    """`ids` in parts of `size` (under SQLite's variable limit), each with its "?,?,..." marks."""
    for start in range(0, len(ids), size):
        part = [int(i) for i in ids[start : start + size]]
        yield part, ",".join("?" * len(part))


class SqliteRows:
    """Reads and row writes over one `index.sqlite` connection (`db`); vectors live elsewhere."""

    db: sqlite3.Connection
    dim: int
    _tables_seen: set[str]  # tables known to exist (old indexes lack chunk_terms, chunk_units; none is dropped)

    def _meta(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}

    def documents(self) -> list[DocumentRecord]:
        return [DocumentRecord(*row) for row in self.db.execute(f"{_DOC_SELECT} ORDER BY source").fetchall()]

    def document(self, doc_id: str) -> DocumentRecord | None:
        return self._document_where("id", doc_id)

    def document_by_source(self, source: str) -> DocumentRecord | None:
        return self._document_where("source", source)

    def _document_where(self, column: str, value: str) -> DocumentRecord | None:
        row = self.db.execute(f"{_DOC_SELECT} WHERE {column} = ?", (value,)).fetchone()
        return DocumentRecord(*row) if row else None

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        found: dict[int, ChunkRecord] = {}
        for part, marks in _id_batches(ids):
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

    def keyword_corpus(self, title_weight: int) -> KeywordCorpus:
        """Every chunk's BM25 terms in chunk id order, read once (see `iter_lexical`)."""
        corpus = KeywordCorpus([], [])
        for chunk_id, chunk_terms in self.iter_lexical(title_weight):
            corpus.ids.append(chunk_id)
            corpus.terms.append(chunk_terms)
        return corpus

    def iter_lexical(self, title_weight: int) -> Iterator[tuple[int, list[str]]]:
        """(chunk id, BM25 terms) per chunk, in chunk id order, streamed from SQLite."""
        rows = self.db.execute(
            "SELECT c.id, d.title, t.terms, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "LEFT JOIN chunk_terms t ON t.chunk_id = c.id ORDER BY c.id"
        ) if self._has_table("chunk_terms") else (
            (r[0], r[7], None, r[6]) for r in self.db.execute(f"{_CHUNK_SELECT} ORDER BY c.id"))
        for chunk_id, title, stored, text in rows:
            body = stored.split() if stored is not None else content_terms(text)
            yield chunk_id, (title_terms(title) * title_weight if title_weight > 0 else []) + body

    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]:
        """Per chunk id: its document id."""
        found: dict[int, str] = {}
        for part, marks in _id_batches(ids):
            found.update(self.db.execute(f"SELECT id, doc_id FROM chunks WHERE id IN ({marks})", part).fetchall())
        return found

    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]:
        """Per chunk id: the set of its BM25 terms (for near-duplicate checks)."""
        found: dict[int, frozenset[str]] = {}
        has_terms = self._has_table("chunk_terms")
        for part, marks in _id_batches(ids):
            sql = (f"SELECT c.id, d.title, {'t.terms' if has_terms else 'NULL'}, c.text FROM chunks c "
                   "JOIN documents d ON d.id = c.doc_id "
                   f"{'LEFT JOIN chunk_terms t ON t.chunk_id = c.id ' if has_terms else ''}WHERE c.id IN ({marks})")
            for chunk_id, title, stored, text in self.db.execute(sql, part):
                body = stored.split() if stored is not None else content_terms(text)
                found[chunk_id] = frozenset((title_terms(title) if title_weight > 0 else []) + body)
        return found

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per chunk id with stored units: (absolute spans int32 (n, 2), float32 vectors (n, dim)).
        Chunks stored without units (before they existed, or by an embedder without them) are absent."""
        if not ids or not self._has_table("chunk_units"):
            return {}
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for part, marks in _id_batches(ids):
            for chunk_id, n, spans, vectors in self.db.execute(
                    f"SELECT chunk_id, n, spans, vectors FROM chunk_units WHERE chunk_id IN ({marks})", part):
                found[chunk_id] = unpack_units(n, spans, vectors, self.dim)
        return found

    def _has_table(self, name: str) -> bool:
        """Whether the table exists (looked up until it does: a writer adds missing tables on open)."""
        if name not in self._tables_seen:
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is None:
                return False
            self._tables_seen.add(name)
        return True

    def _insert_rows(self, doc: DocumentRecord, chunks: Sequence[tuple[int, int, int, int, str]],
                     packed: list[tuple[int, bytes, bytes]] | None) -> list[int]:
        """Replace the document's row and insert its chunks (with their terms and packed units);
        the new chunk ids in order. The caller holds the transaction and removed the old chunks."""
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
        return [i for i in ids if i is not None]
