"""Ingest files (or in-memory texts) into the index, incrementally and crash-safely.

Per file: hash the bytes; skip when the stored hash matches; otherwise load, chunk and queue.
Queued chunks are embedded in large batches (throughput close to raw model encode) and written;
the store commits every `checkpoint_chunks` and at the end. Loading/chunking (a loader thread),
encoding (an encode thread) and store writes (the calling thread) overlap; order is kept. One bad file is recorded as failed
with its reason and never stops the batch.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.chunk import EMBED_CONTEXTS, Chunker, make_chunker
from assistant.embed import Embedder
from assistant.index import (
    DocumentRecord,
    ModelMismatchError,
    Store,
    index_backend,
    open_store,
    read_manifest,
    store_location,
)
from assistant.ingest_files import collect_files
from assistant.ingest_flow import (
    CancellableBar,
    EncodePipeline,
    Feed,
    Pending,
    Prepared,
    committed,
    load_chunks,
)
from assistant.ingest_report import FileResult, IngestInterrupted, IngestReport, printable_name
from assistant.loaders import Limits, LoadedDocument, LoadError, content_hash, load
from assistant.settings import Settings
from assistant.types import file_name

__all__ = ["FileResult", "IngestInterrupted", "IngestReport", "Ingestor", "TextItem", "collect_files", "document_id",
           "printable_name"]


# One item's facts, worked out on the loader thread: (content hash, size in bytes, its loader).
Facts = Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]


@dataclass
class TextItem:
    """A document given as text rather than a file (benchmarks, API uploads)."""

    source: str
    text: str
    title: str = ""


def document_id(source: str) -> str:
    return "d" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:15]


class Ingestor:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.model, index_backend(settings))
        if settings.embed_context not in EMBED_CONTEXTS:
            raise ValueError(f"embed_context {settings.embed_context!r} is not one of {', '.join(EMBED_CONTEXTS)} "
                             "(setting ASSISTANT_EMBED_CONTEXT / --embed-context)")
        self.embed_context = settings.embed_context  # replaced by the index's own when one is opened
        self._chunker: Chunker | None = None

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = make_chunker(self.settings, self.embedder)
        return self._chunker

    def open_store(self) -> Store:
        # An index built with this model records its dim: opening with it spares loading the model
        # (about 7 s) when nothing turns out to need embedding. `_flush` checks the model's real dim
        # before anything is written.
        manifest = read_manifest(self.settings)
        # The index's own choice (recorded when it was created) wins over the setting, so one index
        # never mixes vectors of two kinds; indexes older than the setting used "none".
        self.embed_context = manifest.get("embed_context", "none") if manifest else self.settings.embed_context
        if manifest.get("model") == self.embedder.name and manifest.get("dim", "").isdigit():
            dim = int(manifest["dim"])
        else:
            dim = self.embedder.dim
        return open_store(self.settings, self.embedder.name, dim, writable=True)

    # -- entry points ------------------------------------------------------------------------

    def ingest_paths(self, paths: Sequence[Path | str], prune: bool = False, progress: bool | None = None) -> IngestReport:
        files, notes = collect_files(paths)
        items = [(str(f), self._file_item(f)) for f in files]
        report = self._run(items, progress=progress, prune=prune)
        report.results[:0] = notes
        return report

    def ingest_staged(self, files: Sequence[tuple[str, Path]], progress: bool | None = None) -> IngestReport:
        """Each (source, path): the file at `path` is read and indexed as `source`, the path it will
        have once moved into place (uploads: staged under a temp name, moved after the commit).
        One result per file, in order."""
        return self._run([(source, self._file_item(Path(path))) for source, path in files], progress=progress,
                         prune=False)

    def ingest_texts(self, texts: Iterable[TextItem], progress: bool | None = None) -> IngestReport:
        def item(t: TextItem) -> Facts:
            def facts() -> tuple[str, int, Callable[[], LoadedDocument]]:
                data = t.text.encode("utf-8")
                if not t.text.strip():
                    raise LoadError("empty text: there is nothing to index")
                return (hashlib.sha256(data).hexdigest(), len(data),
                        lambda: LoadedDocument(t.title or t.source, [t.text]))
            return facts

        return self._run([(t.source, item(t)) for t in texts], progress=progress, prune=False)

    def remove(self, targets: Sequence[str]) -> IngestReport:
        """Remove documents by id or by source path."""
        report = IngestReport()
        with self.open_store() as store:
            for target in targets:
                doc = store.document(target) or store.document_by_source(str(Path(target).expanduser().resolve()))
                if doc is None:
                    report.results.append(FileResult(target, "failed", "not in the index (see `assistant documents`)"))
                    continue
                store.remove_document(doc.id)
                report.results.append(FileResult(doc.source, "removed", doc_id=doc.id))
            store.commit()
        return report

    # -- the loop ----------------------------------------------------------------------------

    def _file_item(self, path: Path) -> Facts:
        def facts() -> tuple[str, int, Callable[[], LoadedDocument]]:
            size = path.stat().st_size
            if size > self.settings.max_file_mb * 1024 * 1024:
                raise LoadError(
                    f"file is {size / 1e6:.0f} MB, over the {self.settings.max_file_mb:g} MB limit; "
                    "split it or raise ASSISTANT_MAX_FILE_MB"
                )
            return content_hash(path), size, lambda: load(path, limits)
        limits = Limits.from_settings(self.settings)
        return facts

    def _run(self, items: list[tuple[str, Facts]], progress: bool | None, prune: bool) -> IngestReport:
        """Three stages overlap: a loader thread hashes, loads and chunks the next documents (in
        input order, a bounded feed ahead); one encode thread embeds the current batch; this thread
        checks each document against the store, and writes and commits the previous batch. Store
        access stays on this thread; results, chunks and vectors keep the input order."""
        started = time.perf_counter()
        report = IngestReport()
        show = sys.stderr.isatty() if progress is None else progress
        pending: list[Pending] = []
        uncommitted = 0
        with self.open_store() as store:
            files_bar = tqdm(total=len(items), desc="files", unit="file", disable=not show, position=0)
            chunks_bar = tqdm(desc="chunks embedded", unit="chunk", disable=not show, position=1)
            # Stored hashes before the loader starts: it skips loading files that look unchanged.
            # Only a hint; the decision below asks the store itself.
            known = {doc.source: doc.content_hash for doc in store.documents()} if items else {}
            chunker = self.chunker  # created here, not lazily in the loader thread
            feed = Feed(max(64, 2 * self.settings.embed_batch_chunks))
            loader_thread = threading.Thread(target=self._prepare_all, args=(items, known, chunker, feed),
                                             name="ingest-load", daemon=True)
            encoder = ThreadPoolExecutor(1, thread_name_prefix="ingest-encode")
            cancelled = threading.Event()
            batches = EncodePipeline(self, store, report, encoder, CancellableBar(chunks_bar, cancelled))  # type: ignore[arg-type]
            first_uncommitted: str | None = None  # Ctrl-C: the index is as it was before this file
            committing: tuple[int, str | None] | None = None  # (generation a checkpoint commit makes, after)
            try:
                loader_thread.start()
                for _ in range(len(items)):
                    prep = feed.get()
                    first_uncommitted = first_uncommitted or prep.source
                    files_bar.set_postfix_str(file_name(prep.source)[-40:], refresh=False)
                    result = FileResult(prep.source, "failed", prep.reason or "")
                    report.results.append(result)
                    if prep.reason is None:
                        try:
                            self._decide(store, prep, result, chunker, pending)
                        except LoadError as exc:
                            result.status, result.reason = "failed", str(exc)
                        except (OSError, MemoryError, ValueError, RuntimeError) as exc:
                            result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
                    files_bar.update(1)
                    if sum(len(p.chunks) for p in pending) >= self.settings.embed_batch_chunks:
                        uncommitted += batches.submit(pending)
                        pending = []
                    if uncommitted >= self.settings.checkpoint_chunks:
                        after = batches.inflight_source
                        # Ctrl-C right after the commit, before the bookkeeping below: the store tells.
                        committing = (store.generation + 1, after)
                        store.commit()
                        uncommitted = 0
                        first_uncommitted = after
                        committing = None
                uncommitted += batches.submit(pending)
                uncommitted += batches.drain()
                loader_thread.join()  # it has handed on every item
                if prune:
                    self._prune(store, report)
                store.commit()
            except KeyboardInterrupt as exc:
                cancelled.set()  # the encode thread stops at its next step; the store closes uncommitted
                if committing is not None and committed(store, committing[0]):
                    first_uncommitted = committing[1]
                raise IngestInterrupted(first_uncommitted or (items[0][0] if items else None)) from exc
            finally:
                feed.close()
                encoder.shutdown(wait=not cancelled.is_set(), cancel_futures=True)
                files_bar.close()
                chunks_bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare_all(self, items: list[tuple[str, Facts]],
                     known: dict[str, str], chunker: Chunker, feed: Feed) -> None:
        """Loader thread: hash, load and chunk each item in order and hand it on (blocks while the
        feed is full). Expected failures travel with their item; anything else ends the ingest."""
        try:
            for source, facts in items:
                prep = Prepared(source)
                try:
                    prep.digest, prep.size, prep.loader = facts()
                    if known.get(source) != prep.digest:  # looks new or changed: load and chunk now
                        prep.title, prep.chunks, prep.note = load_chunks(prep.loader, chunker)
                except LoadError as exc:
                    prep.reason = str(exc)
                except (OSError, MemoryError, ValueError, RuntimeError) as exc:
                    prep.reason = f"{type(exc).__name__}: {exc}"
                if not feed.put(prep, len(prep.chunks or ())):
                    return  # the ingest stopped
        except BaseException as exc:  # noqa: BLE001 - re-raised on the ingest thread
            feed.fail(exc)

    def _decide(self, store: Store, prep: Prepared, result: FileResult, chunker: Chunker,
                pending: list[Pending]) -> None:
        """Unchanged (per the store) or queued for embedding, as the serial ingest decided."""
        assert prep.loader is not None
        existing = store.document_by_source(prep.source)
        result.doc_id = document_id(prep.source)
        if existing and existing.content_hash == prep.digest:
            result.status, result.chunks = "unchanged", existing.n_chunks
            return
        if prep.chunks is None:  # the loader's hint said unchanged (e.g. a source given twice)
            prep.title, prep.chunks, prep.note = load_chunks(prep.loader, chunker)
        record = DocumentRecord(result.doc_id, prep.source, prep.title, prep.digest, prep.size,
                                len(prep.chunks), time.time())
        result.status = "updated" if existing else "added"
        result.chunks = len(prep.chunks)
        result.reason = prep.note
        pending.append(Pending(record, prep.chunks, result))

    def _check_dim(self, store: Store) -> None:
        if self.embedder.dim != store.dim:
            raise ModelMismatchError(
                f"index at {store_location(self.settings)} has {store.dim}-dim vectors, but the model "
                f"{self.embedder.name!r} gives {self.embedder.dim}-dim ones. Rebuild: delete "
                f"{store_location(self.settings)} (or pick a new --index-dir / --store) "
                "and run `assistant ingest PATH` again"
            )

    def _encode(self, texts: list[str], bar: tqdm, spans: list[list[tuple[int, int]]] | None = None
                ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Encode thread: one batch's chunk vectors (in steps, for the progress bar) and, given the
        units' spans in each text, their vectors from the same forward pass (`encode_units`; None
        when the embedder cannot give them, e.g. a cache that replaces `encode`)."""
        vectors = []
        units: list[np.ndarray] | None = [] if spans is not None and self.embedder.supports_units else None
        step = max(32, self.settings.embed_batch_chunks)
        for start in range(0, len(texts), step):
            if units is not None and spans is not None:
                chunk_vectors, unit_vectors = self.embedder.encode_units(texts[start : start + step],
                                                                         spans[start : start + step])
                vectors.append(chunk_vectors)
                units.extend(unit_vectors)
            else:
                vectors.append(self.embedder.encode(texts[start : start + step]))
            bar.update(min(step, len(texts) - start))
        return (np.concatenate(vectors) if vectors else np.zeros((0, self.embedder.dim), np.float32)), units

    def _write(self, store: Store, pending: list[Pending], vectors: np.ndarray, report: IngestReport,
               units: list[tuple[np.ndarray, np.ndarray]] | None = None) -> int:
        """Store each document with its chunks' vectors and, when given, its units (spans, vectors) per chunk."""
        offset = 0
        for p in pending:
            n = len(p.chunks)
            rows = [(c.ord, c.start, c.end, c.n_tokens, c.text) for c in p.chunks]
            store.put_document(p.record, rows, vectors[offset : offset + n],
                               units=None if units is None else units[offset : offset + n])
            offset += n
        report.embedded_chunks += offset
        return offset

    def _prune(self, store: Store, report: IngestReport) -> None:
        for doc in store.documents():
            if os.path.isabs(doc.source) and not os.path.exists(doc.source):
                store.remove_document(doc.id)
                report.results.append(FileResult(doc.source, "removed", "file is gone", doc_id=doc.id))
