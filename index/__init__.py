"""The index: FAISS vectors plus SQLite documents, chunks and manifest in one folder."""

from assistant.index.store import (
    ChunkRecord,
    DocumentRecord,
    IndexLockedError,
    IndexStore,
    ModelMismatchError,
    StoreError,
)

__all__ = ["ChunkRecord", "DocumentRecord", "IndexLockedError", "IndexStore", "ModelMismatchError", "StoreError"]
