"""The PostgreSQL store's schema and manifest: the tables (created by `assistant db migrate`, or by
the first writer), connecting, and the check that a database holds this model's index.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from assistant.types import ModelMismatchError, StoreError

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


def connect(url: str, vectors: bool = False) -> Any:
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
    return load_vectors_as_arrays(conn) if vectors else conn


def load_vectors_as_arrays(conn: Any) -> Any:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    return conn


def manifest(conn: Any) -> dict[str, str]:
    """The manifest rows; {} when the tables do not exist yet."""
    if conn.execute("SELECT to_regclass('assistant_meta')").fetchone()[0] is None:
        return {}
    return dict(conn.execute("SELECT key, value FROM assistant_meta").fetchall())


def migrate(url: str, model_name: str, dim: int, embed_context: str = "title") -> dict[str, str]:
    """Create (or bring up to date) the tables and record the manifest; returns the manifest.
    `embed_context` (Settings.embed_context) is recorded when the tables are created, not changed after.

    Refuses a database whose manifest names another embedding model or dimension."""
    conn = connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('assistant_migrate'))")
            for statement in schema_sql(dim):
                conn.execute(statement)
            meta = manifest(conn)
            if meta:
                check_manifest(meta, url, model_name, dim)
            else:
                conn.execute(
                    "INSERT INTO assistant_meta(key, value) VALUES ('schema_version', %s), ('model', %s), "
                    "('dim', %s), ('embed_context', %s), ('generation', '0'), ('created_at', %s)",
                    (str(SCHEMA_VERSION), model_name, str(dim), embed_context, json.dumps(time.time())),
                )
            return manifest(conn)
    finally:
        conn.close()


def read_manifest(url: str) -> dict[str, str]:
    """The manifest without touching the rest; {} when the tables do not exist yet."""
    conn = connect(url)
    try:
        return manifest(conn)
    finally:
        conn.close()


def check_manifest(meta: dict[str, str], url: str, model_name: str, dim: int) -> None:
    if meta.get("model") != model_name or int(meta.get("dim", -1)) != dim:
        raise ModelMismatchError(
            f"store {redact(url)} was built with embedding model {meta.get('model')!r} (dim {meta.get('dim')}), "
            f"but {model_name!r} (dim {dim}) is configured. Use --embedding-model {meta.get('model')!r}, or "
            "point --store at another database/schema and ingest again"
        )
    if int(meta.get("schema_version", 0)) > SCHEMA_VERSION:
        raise StoreError(f"store {redact(url)} has schema {meta.get('schema_version')}, newer than this "
                         f"version of assistant understands ({SCHEMA_VERSION}); upgrade assistant")
