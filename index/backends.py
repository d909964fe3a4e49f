"""Which store holds the index, chosen by `Settings.store`: the one place that opens one (the
interface every store offers, `Store`, is in `base.py`).

- `store = ""` (default): the local folder `index_dir` (FAISS vectors + SQLite rows, `IndexStore`).
- `store = "postgresql://user:password@host:port/db"`: PostgreSQL with pgvector (`PostgresStore`).

Callers (ingest, retrieval, the server, the benchmark) use only `Store`; stores are found through
the plugin registry (`builtin_stores.py` registers these two).
"""

from __future__ import annotations

from assistant.index import pg_schema
from assistant.index.base import Store
from assistant.index.pg_schema import is_postgres_url, redact
from assistant.index.store import IndexStore
from assistant.settings import Settings


def uses_postgres(settings: Settings) -> bool:
    return is_postgres_url(settings.store)


def store_location(settings: Settings) -> str:
    """Where the index lives, for messages (a PostgreSQL URL without its password)."""
    return redact(settings.store) if uses_postgres(settings) else str(settings.index_dir)


def read_manifest(settings: Settings) -> dict[str, str]:
    """The index's manifest (model, dim, ...) without opening it; {} when there is none yet."""
    if uses_postgres(settings):
        return pg_schema.read_manifest(settings.store)
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
