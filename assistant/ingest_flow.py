"""The moving parts of one ingest run: the bounded loader-to-writer feed, the encode pipeline that
overlaps encoding batch k with writing batch k-1, the cancellable progress bar, and the per-chunk
inputs (embedded text, answer-unit spans) given to the encoder. `Ingestor` in `ingest.py` drives them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from assistant.chunk import Chunk, Chunker, embedding_text
from assistant.index import DocumentRecord, Store
from assistant.ingest_report import FileResult, IngestReport
from assistant.loaders import LoadedDocument, LoadError
from assistant.units import split_units

if TYPE_CHECKING:
    from assistant.ingest import Ingestor


class Cancelled(Exception):
    """Raised in the encode thread at its next step once the ingest is interrupted."""


class CancellableBar:
    """The chunks progress bar, as the encode thread sees it: its update() after each encode step
    raises once the ingest is cancelled, so a long batch stops at the next step, not at its end."""

    def __init__(self, bar: tqdm, cancelled: threading.Event) -> None:
        self._bar, self._cancelled = bar, cancelled

    def update(self, n: int = 1) -> None:
        if self._cancelled.is_set():
            raise Cancelled
        self._bar.update(n)


@dataclass
class Pending:
    record: DocumentRecord
    chunks: list[Chunk]
    result: FileResult


@dataclass
class Prepared:
    """One item after the loader thread: facts, and chunks unless it looked unchanged."""

    source: str
    reason: str | None = None  # set: the item failed (the reason is reported)
    digest: str = ""
    size: int = 0
    loader: Callable[[], LoadedDocument] | None = None
    title: str = ""
    chunks: list[Chunk] | None = None
    note: str = ""  # the loader's remark for the report (e.g. a PDF read with an empty password)


def load_chunks(loader: Callable[[], LoadedDocument], chunker: Chunker) -> tuple[str, list[Chunk], str]:
    loaded = loader()
    chunks = list(chunker.chunks(loaded.segments))
    if not chunks:
        raise LoadError("no text to index after cleaning")
    return loaded.title, chunks, loaded.note


class Feed:
    """Loader thread → ingest thread, in order. Bounded by queued chunks (at least one item always
    fits), so a slow encoder holds back loading rather than filling memory."""

    def __init__(self, max_chunks: int) -> None:
        self._max = max_chunks
        self._items: deque[tuple[Prepared, int]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def put(self, item: Prepared, weight: int) -> bool:
        """False once the consumer has closed the feed."""
        with self._cond:
            while self._items and self._queued + weight > self._max and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append((item, weight))
            self._queued += weight
            self._cond.notify_all()
            return True

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def get(self) -> Prepared:
        with self._cond:
            while not self._items and self._error is None:
                self._cond.wait()
            if self._items:
                item, weight = self._items.popleft()
                self._queued -= weight
                self._cond.notify_all()
                return item
            assert self._error is not None
            raise self._error

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class EncodePipeline:
    """Batch k is encoded on the encode thread while the ingest thread writes batch k-1 and
    prepares batch k+1. `submit` returns the chunks it wrote (those of the previous batch)."""

    def __init__(self, ingestor: Ingestor, store: Store, report: IngestReport, encoder: ThreadPoolExecutor,
                 bar: tqdm) -> None:
        self._ingestor, self._store, self._report = ingestor, store, report
        self._encoder, self._bar = encoder, bar
        self._inflight: tuple[Future[tuple[np.ndarray, list[np.ndarray] | None]], list[Pending],
                              list[np.ndarray]] | None = None
        self._checked = False

    def submit(self, pending: list[Pending]) -> int:
        if not pending:
            return 0
        if not self._checked:  # before anything is encoded or written
            self._ingestor._check_dim(self._store)
            self._checked = True
        texts, spans, relative = unit_inputs(pending, self._ingestor.embed_context)
        future = self._encoder.submit(self._ingestor._encode, texts, self._bar, relative)
        written = self.drain()
        self._inflight = (future, pending, spans)
        return written

    @property
    def inflight_source(self) -> str | None:
        """The first document submitted (encoding) but not yet written, so not committed; None: none is."""
        return self._inflight[1][0].record.source if self._inflight else None

    def drain(self) -> int:
        if self._inflight is None:
            return 0
        future, pending, spans = self._inflight
        self._inflight = None
        vectors, unit_vectors = future.result()
        units = None if unit_vectors is None else list(zip(spans, unit_vectors, strict=True))
        return self._ingestor._write(self._store, pending, vectors, self._report, units)


def unit_inputs(pending: list[Pending], context: str) -> tuple[list[str], list[np.ndarray], list[list[tuple[int, int]]]]:
    """Per chunk: the text the model sees, its answer units' absolute spans (int32, shape (n, 2), from
    `split_units(chunk.text, chunk.start)`) and the same spans relative to the embedded text (shifted
    past the title `embedding_text` may put in front, so they point at the chunk's own characters)."""
    texts: list[str] = []
    spans: list[np.ndarray] = []
    relative: list[list[tuple[int, int]]] = []
    for p in pending:
        for c in p.chunks:
            text = embedding_text(p.record.title, c.text, context)
            if not text.endswith(c.text):  # embedding_text only ever puts something in front
                raise RuntimeError("embedding_text changed the chunk's own text; unit spans would not match")
            shift = len(text) - len(c.text) - c.start
            absolute = np.asarray([(u.start, u.end) for u in split_units(c.text, c.start)],
                                  dtype=np.int32).reshape(-1, 2)
            texts.append(text)
            spans.append(absolute)
            relative.append([(int(a) + shift, int(b) + shift) for a, b in absolute])
    return texts, spans, relative


def committed(store: Store, generation: int) -> bool:
    """Whether the store's committed generation has reached `generation` (False if it cannot tell)."""
    try:
        return store.generation >= generation
    except Exception:  # noqa: BLE001 - an interrupted store may refuse reads: keep the older answer
        return False
