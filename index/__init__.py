"""The index: where documents, chunks, vectors and the keyword side live.

`open_store(settings, ...)` picks the store: the local folder (FAISS vectors + SQLite, `IndexStore`)
or PostgreSQL with pgvector (`PostgresStore`); both offer the `Store` interface.
"""

from assistant.index.backends import index_backend, open_store, read_manifest, store_location, uses_postgres
from assistant.index.base import Bm25Params, CorpusStats, KeywordIndex, Store
from assistant.index.store import IndexLockedError, IndexStore
from assistant.types import ChunkRecord, DocumentRecord, ModelMismatchError, StoreError

__all__ = ["Bm25Params", "ChunkRecord", "CorpusStats", "DocumentRecord", "IndexLockedError", "IndexStore", "KeywordIndex",
           "ModelMismatchError", "Store", "StoreError", "index_backend", "open_store", "read_manifest", "store_location",
           "uses_postgres"]
