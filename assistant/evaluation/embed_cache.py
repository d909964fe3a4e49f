"""An on-disk embedding cache for benchmarks and tuning runs: a text is embedded once per model.

`CachedEmbedder` is an `Embedder` whose `encode` looks every text up by
sha256(embedder name, text) in one SQLite file and only sends the misses to the model. The name
carries the backend ("all-MiniLM-L6-v2+onnx-int8"), so fp32 and int8 vectors never mix. Vectors
are stored as raw float32 bytes, so a cached vector is bit-identical to the one first computed.
The product's own ingest and query paths do not use it; `assistant bench` does.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from assistant.embed import Embedder
from assistant.settings import user_cache_dir


def default_cache_dir() -> Path:
    """`$ASSISTANT_EMBED_CACHE`, else `$XDG_CACHE_HOME/assistant/embeddings` (~/.cache/...)."""
    return user_cache_dir("embeddings", "ASSISTANT_EMBED_CACHE")


def text_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


class CachedEmbedder(Embedder):
    """Same interface as `Embedder`; `hits` and `misses` count texts looked up since creation."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", cache_dir: Path | str | None = None,
                 backend: str = "onnx-int8") -> None:
        super().__init__(model, backend)
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.cache_path = folder / "embeddings.sqlite"
        self._db = sqlite3.connect(self.cache_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, "
                         "vec BLOB NOT NULL)")
        self._db_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._db_lock:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                for key, dim, blob in self._db.execute(f"SELECT key, dim, vec FROM vectors WHERE key IN ({marks})", part):
                    found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        if not texts:
            return super().encode(texts, batch_size, progress)
        keys = [text_key(self.name, t) for t in texts]
        found = self._lookup(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        self.hits += len(texts) - sum(1 for k in keys if k not in found)
        if missing:
            by_key = dict(zip(keys, texts, strict=True))
            fresh = super().encode([by_key[k] for k in missing], batch_size, progress)
            self.misses += len(missing)
            with self._db_lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO vectors(key, dim, vec) VALUES (?, ?, ?)",
                                     [(k, int(v.shape[0]), v.astype(np.float32).tobytes()) for k, v in
                                      zip(missing, fresh, strict=True)])
                self._db.execute("COMMIT")
            found.update(zip(missing, fresh, strict=True))
        return np.ascontiguousarray(np.stack([found[k] for k in keys]), dtype=np.float32)

    def close(self) -> None:
        with self._db_lock:
            self._db.close()
