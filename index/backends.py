"""Which store holds the index, chosen by `Settings.store`: the interface every store offers and
the one place that opens one.

- `store = ""` (default): the local folder `index_dir` (FAISS vectors + SQLite rows, `IndexStore`).
- `store = "postgresql://user:password@host:port/db"`: PostgreSQL with pgvector (`PostgresStore`).

Callers (ingest, retrieval, the server, the benchmark) use only `Store`, so a new store plugs in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from assistant.index.postgres import PostgresStore, is_postgres_url, redact
from assistant.index.store import IndexStore
from assistant.settings import Settings
from assistant.types import ChunkRecord, DocumentRecord


class Store(Protocol):
    """What the rest of the assistant needs from a store (both stores pass one test suite)."""

    dim: int
    keyword_backend: str  # "bm25s": the retriever runs BM25 from the store's terms; "postgres": keyword_search()

    @property
    def generation(self) -> int: ...
    def reload_if_changed(self, generation: int) -> bool: ...
    def documents(self) -> list[DocumentRecord]: ...
    def document(self, doc_id: str) -> DocumentRecord | None: ...
    def document_by_source(self, source: str) -> DocumentRecord | None: ...
    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]: ...
    def document_chunks(self, doc_id: str, start: int = 0, end: int | None = None) -> list[ChunkRecord]: ...
    def iter_chunks(self) -> Iterator[ChunkRecord]: ...
    def stats(self) -> dict[str, object]: ...
    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]: ...
    def vectors_of(self, ids: Sequence[int]) -> np.ndarray: ...
    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]: ...
    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]: ...
    def unit_vectors(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per chunk id that has stored units: (absolute spans int32 (n, 2), float32 vectors (n, dim))."""
        ...
    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray, units: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> None: ...
    def remove_document(self, doc_id: str) -> bool: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


def uses_postgres(settings: Settings) -> bool:
    return is_postgres_url(settings.store)


def store_location(settings: Settings) -> str:
    """Where the index lives, for messages (a PostgreSQL URL without its password)."""
    return redact(settings.store) if uses_postgres(settings) else str(settings.index_dir)


def read_manifest(settings: Settings) -> dict[str, str]:
    """The index's manifest (model, dim, ...) without opening it; {} when there is none yet."""
    if uses_postgres(settings):
        return PostgresStore.read_manifest(settings.store)
    return IndexStore.read_manifest(settings.index_dir)


def index_backend(settings: Settings) -> str:
    """The embed backend to open this index with: the precision its vectors were built with.

    `embed_backend` picks the precision of a NEW index. An existing one keeps its own, as it keeps its
    `embed_context`: an fp32 index opens with "onnx" (or "torch", if that is the setting), an int8
    one with "onnx-int8", so changing the default never locks a user out of an index built before."""
    from assistant.embed import BACKEND_SUFFIX, split_backend

    recorded = read_manifest(settings).get("model", "")
    model, backend = split_backend(recorded, "onnx")
    if not recorded or model != settings.model:
        return settings.embed_backend  # no index yet, or another model: the store reports the mismatch
    if BACKEND_SUFFIX[backend] == BACKEND_SUFFIX[settings.embed_backend]:
        return settings.embed_backend
    return backend


def open_store(settings: Settings, model_name: str, dim: int, writable: bool = False) -> Store:
    """The store for `settings.store`'s URL scheme ("" the local folder), from the plugin registry."""
    from assistant import plugins

    registry = plugins.stores()
    scheme, separator, _ = settings.store.partition("://")
    opener = registry.find(scheme.lower()) if separator or not settings.store else None
    if opener is None:
        schemes = ", ".join(f"{name}://" for name in registry.names() if name)
        raise ValueError(f"store {settings.store!r} is not understood: leave it empty for the local index folder "
                         f"(--index-dir) or give postgresql://user:password@host:port/database (registered: "
                         f"{schemes}; {registry.install_hint})")
    return opener(settings, model_name, dim, writable)
