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
import stat
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.chunk import EMBED_CONTEXTS, Chunk, Chunker, embedding_text, make_chunker
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
from assistant.loaders import Limits, LoadedDocument, LoadError, content_hash, is_supported, load
from assistant.settings import Settings
from assistant.units import split_units

STATUSES = ("added", "updated", "unchanged", "removed", "failed", "skipped")


@dataclass
class FileResult:
    source: str
    status: str
    reason: str = ""
    chunks: int = 0
    doc_id: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    embedded_chunks: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        """Counts, then one line per failed or skipped path and per added file with a note (names
        escaped: a newline or a terminal control character in a file name cannot forge a line)."""
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        lines = [f"{counts}; {self.embedded_chunks} chunks embedded in {self.seconds:.1f} s"]
        for r in self.results:
            if r.status in ("failed", "skipped") or (r.reason and r.status in ("added", "updated")):
                lines.append(f"  {r.status}: {printable_name(r.source)}: {printable_name(r.reason)}")
        return "\n".join(lines)


def printable_name(text: str) -> str:
    """`text` safe to print on one terminal line: control and format characters (newline, ESC,
    bidi overrides ...) as escapes like \\n, \\x1b, \\u202e; a file-name byte that is not UTF-8
    (a surrogate escape from the file system) as \\xe9; everything else as it is."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or unicodedata.category(ch) == "Zs":  # spaces (no-break too) stay
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest: queued work is cancelled and nothing after the last commit is kept.
    `before` is the first file whose changes were not committed (None: the ingest had not started)."""

    def __init__(self, before: str | None) -> None:
        super().__init__(before or "")
        self.before = before

    def message(self) -> str:
        where = f"before {self.before}" if self.before else "before this ingest"
        return f"interrupted; the index is as it was {where}"


class _Cancelled(Exception):
    """Raised in the encode thread at its next step once the ingest is interrupted."""


class _CancellableBar:
    """The chunks progress bar, as the encode thread sees it: its update() after each encode step
    raises once the ingest is cancelled, so a long batch stops at the next step, not at its end."""

    def __init__(self, bar: tqdm, cancelled: threading.Event) -> None:
        self._bar, self._cancelled = bar, cancelled

    def update(self, n: int = 1) -> None:
        if self._cancelled.is_set():
            raise _Cancelled
        self._bar.update(n)


@dataclass
class TextItem:
    """A document given as text rather than a file (benchmarks, API uploads)."""

    source: str
    text: str
    title: str = ""


@dataclass
class _Pending:
    record: DocumentRecord
    chunks: list[Chunk]
    result: FileResult


@dataclass
class _Prepared:
    """One item after the loader thread: facts, and chunks unless it looked unchanged."""

    source: str
    reason: str | None = None  # set: the item failed (the reason is reported)
    digest: str = ""
    size: int = 0
    loader: Callable[[], LoadedDocument] | None = None
    title: str = ""
    chunks: list[Chunk] | None = None
    note: str = ""  # the loader's remark for the report (e.g. a PDF read with an empty password)


def _load_chunks(loader: Callable[[], LoadedDocument], chunker: Chunker) -> tuple[str, list[Chunk], str]:
    loaded = loader()
    chunks = list(chunker.chunks(loaded.segments))
    if not chunks:
        raise LoadError("no text to index after cleaning")
    return loaded.title, chunks, loaded.note


class _Feed:
    """Loader thread → ingest thread, in order. Bounded by queued chunks (at least one item always
    fits), so a slow encoder holds back loading rather than filling memory."""

    def __init__(self, max_chunks: int) -> None:
        self._max = max_chunks
        self._items: deque[tuple[_Prepared, int]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def put(self, item: _Prepared, weight: int) -> bool:
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

    def get(self) -> _Prepared:
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


class _EncodePipeline:
    """Batch k is encoded on the encode thread while the ingest thread writes batch k-1 and
    prepares batch k+1. `submit` returns the chunks it wrote (those of the previous batch)."""

    def __init__(self, ingestor: Ingestor, store: Store, report: IngestReport, encoder: ThreadPoolExecutor,
                 bar: tqdm) -> None:
        self._ingestor, self._store, self._report = ingestor, store, report
        self._encoder, self._bar = encoder, bar
        self._inflight: tuple[Future[tuple[np.ndarray, list[np.ndarray] | None]], list[_Pending],
                              list[np.ndarray]] | None = None
        self._checked = False

    def submit(self, pending: list[_Pending]) -> int:
        if not pending:
            return 0
        if not self._checked:  # before anything is encoded or written
            self._ingestor._check_dim(self._store)
            self._checked = True
        texts, spans, relative = _unit_inputs(pending, self._ingestor.embed_context)
        future = self._encoder.submit(self._ingestor._encode, texts, self._bar, relative)
        written = self.drain()
        self._inflight = (future, pending, spans)
        return written

    def drain(self) -> int:
        if self._inflight is None:
            return 0
        future, pending, spans = self._inflight
        self._inflight = None
        vectors, unit_vectors = future.result()
        units = None if unit_vectors is None else list(zip(spans, unit_vectors, strict=True))
        return self._ingestor._write(self._store, pending, vectors, self._report, units)


def _unit_inputs(pending: list[_Pending], context: str) -> tuple[list[str], list[np.ndarray], list[list[tuple[int, int]]]]:
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


def _committed(store: Store, generation: int) -> bool:
    """Whether the store's committed generation has reached `generation` (False if it cannot tell)."""
    try:
        return store.generation >= generation
    except Exception:  # noqa: BLE001 - an interrupted store may refuse reads: keep the older answer
        return False


def document_id(source: str) -> str:
    return "d" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:15]


def _unreadable(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _bad_name(path: Path) -> FileResult | None:
    """A path that is not valid UTF-8 (bytes of another encoding in a file name) cannot be stored
    or shown as a source: a failure that says so, instead of a UnicodeEncodeError later."""
    try:
        str(path).encode("utf-8")
        return None
    except UnicodeEncodeError:
        bad = next((f"byte 0x{ord(c) - 0xDC00:02x}" for c in str(path) if 0xDC80 <= ord(c) <= 0xDCFF), "a surrogate")
        return FileResult(str(path), "failed",
                          f"the name is not valid UTF-8 ({bad}): rename it in UTF-8 "
                          "(for example `convmv -f latin1 -t utf-8 --notest NAME`)")


def _walk(root: Path, files: list[Path], notes: list[FileResult]) -> None:
    """Supported files under the folder `root` (hidden entries skipped, symlinked folders not
    walked); a folder or entry that cannot be read is a failure naming it, never a silent gap."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue  # a symlink loop or a folder reached twice
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError as exc:
            notes.append(FileResult(str(folder), "failed", f"cannot read this folder ({_unreadable(exc)}): nothing "
                                    "under it was ingested; check its permissions"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)  # symlinked folders are not walked (as rglob)
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                notes.append(FileResult(str(child), "failed", f"cannot read it ({_unreadable(exc)}); check its permissions"))
                continue
            if is_dir:
                if (problem := _bad_name(child)) is not None:
                    notes.append(problem)
                else:
                    stack.append(child)
            elif is_file:
                found.append(child)
    for child in sorted(found):
        _add_file(child, files, notes)


def _add_file(path: Path, files: list[Path], notes: list[FileResult]) -> None:
    try:
        resolved = path.resolve()
    except OSError as exc:
        notes.append(FileResult(str(path), "failed", f"cannot read it ({_unreadable(exc)}); check its permissions"))
        return
    if not is_supported(path):
        notes.append(FileResult(str(resolved), "skipped", f"unsupported type {path.suffix or '(none)'}"))
    elif (problem := _bad_name(resolved)) is not None:
        notes.append(problem)
    else:
        files.append(resolved)


def collect_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[FileResult]]:
    """Supported files under the paths (folders recurse, hidden entries skipped), plus skip/fail notes:
    a path or folder that cannot be read (permissions) is a failure that names it."""
    files: list[Path] = []
    notes: list[FileResult] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            notes.append(FileResult(str(path), "failed", "no such file or folder"))
            continue
        except NotADirectoryError:
            notes.append(FileResult(str(path), "failed", "no such file or folder (a part of the path is a file)"))
            continue
        except OSError as exc:  # e.g. PermissionError: a folder on the way is not searchable
            notes.append(FileResult(str(path), "failed", f"cannot read it ({_unreadable(exc)}): a folder on its path "
                                    "may not be readable; check the permissions"))
            continue
        if stat.S_ISDIR(mode):
            _walk(path, files, notes)
        elif stat.S_ISREG(mode):
            _add_file(path, files, notes)
        else:
            notes.append(FileResult(str(path), "skipped", "not a regular file or folder"))
    unique = list(dict.fromkeys(files))
    return unique, notes


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
        def item(t: TextItem) -> Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]:
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

    def _file_item(self, path: Path) -> Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]:
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

    def _run(self, items: list[tuple[str, Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]]],
             progress: bool | None, prune: bool) -> IngestReport:
        """Three stages overlap: a loader thread hashes, loads and chunks the next documents (in
        input order, a bounded feed ahead); one encode thread embeds the current batch; this thread
        checks each document against the store, and writes and commits the previous batch. Store
        access stays on this thread; results, chunks and vectors keep the input order."""
        started = time.perf_counter()
        report = IngestReport()
        show = sys.stderr.isatty() if progress is None else progress
        pending: list[_Pending] = []
        uncommitted = 0
        with self.open_store() as store:
            files_bar = tqdm(total=len(items), desc="files", unit="file", disable=not show, position=0)
            chunks_bar = tqdm(desc="chunks embedded", unit="chunk", disable=not show, position=1)
            # Stored hashes before the loader starts: it skips loading files that look unchanged.
            # Only a hint; the decision below asks the store itself.
            known = {doc.source: doc.content_hash for doc in store.documents()} if items else {}
            chunker = self.chunker  # created here, not lazily in the loader thread
            feed = _Feed(max(64, 2 * self.settings.embed_batch_chunks))
            loader_thread = threading.Thread(target=self._prepare_all, args=(items, known, chunker, feed),
                                             name="ingest-load", daemon=True)
            encoder = ThreadPoolExecutor(1, thread_name_prefix="ingest-encode")
            cancelled = threading.Event()
            batches = _EncodePipeline(self, store, report, encoder, _CancellableBar(chunks_bar, cancelled))  # type: ignore[arg-type]
            first_uncommitted: str | None = None  # Ctrl-C: the index is as it was before this file
            committing: tuple[int, str | None] | None = None  # (generation a checkpoint commit makes, after)
            try:
                loader_thread.start()
                for _ in range(len(items)):
                    prep = feed.get()
                    first_uncommitted = first_uncommitted or prep.source
                    files_bar.set_postfix_str(Path(prep.source).name[-40:], refresh=False)
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
                        inflight = batches._inflight  # submitted (encoding), not yet written: not committed
                        after = inflight[1][0].record.source if inflight and inflight[1] else None
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
                if committing is not None and _committed(store, committing[0]):
                    first_uncommitted = committing[1]
                raise IngestInterrupted(first_uncommitted or (items[0][0] if items else None)) from exc
            finally:
                feed.close()
                encoder.shutdown(wait=not cancelled.is_set(), cancel_futures=True)
                files_bar.close()
                chunks_bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare_all(self, items: list[tuple[str, Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]]],
                     known: dict[str, str], chunker: Chunker, feed: _Feed) -> None:
        """Loader thread: hash, load and chunk each item in order and hand it on (blocks while the
        feed is full). Expected failures travel with their item; anything else ends the ingest."""
        try:
            for source, facts in items:
                prep = _Prepared(source)
                try:
                    prep.digest, prep.size, prep.loader = facts()
                    if known.get(source) != prep.digest:  # looks new or changed: load and chunk now
                        prep.title, prep.chunks, prep.note = _load_chunks(prep.loader, chunker)
                except LoadError as exc:
                    prep.reason = str(exc)
                except (OSError, MemoryError, ValueError, RuntimeError) as exc:
                    prep.reason = f"{type(exc).__name__}: {exc}"
                if not feed.put(prep, len(prep.chunks or ())):
                    return  # the ingest stopped
        except BaseException as exc:  # noqa: BLE001 - re-raised on the ingest thread
            feed.fail(exc)

    def _decide(self, store: Store, prep: _Prepared, result: FileResult, chunker: Chunker,
                pending: list[_Pending]) -> None:
        """Unchanged (per the store) or queued for embedding, as the serial ingest decided."""
        assert prep.loader is not None
        existing = store.document_by_source(prep.source)
        result.doc_id = document_id(prep.source)
        if existing and existing.content_hash == prep.digest:
            result.status, result.chunks = "unchanged", existing.n_chunks
            return
        if prep.chunks is None:  # the loader's hint said unchanged (e.g. a source given twice)
            prep.title, prep.chunks, prep.note = _load_chunks(prep.loader, chunker)
        record = DocumentRecord(result.doc_id, prep.source, prep.title, prep.digest, prep.size,
                                len(prep.chunks), time.time())
        result.status = "updated" if existing else "added"
        result.chunks = len(prep.chunks)
        result.reason = prep.note
        pending.append(_Pending(record, prep.chunks, result))

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

    def _write(self, store: Store, pending: list[_Pending], vectors: np.ndarray, report: IngestReport,
               units: list[tuple[np.ndarray, np.ndarray]] | None = None) -> int:
        """Store each document with its chunks' vectors and, when given, its units (spans, vectors) per chunk."""
        offset = 0
        for p in pending:
            n = len(p.chunks)
            rows = [(c.ord, c.start, c.end, c.n_tokens, c.text) for c in p.chunks]
            if units is None:
                store.put_document(p.record, rows, vectors[offset : offset + n])
            else:
                store.put_document(p.record, rows, vectors[offset : offset + n], units=units[offset : offset + n])
            offset += n
        report.embedded_chunks += offset
        return offset

    def _prune(self, store: Store, report: IngestReport) -> None:
        for doc in store.documents():
            if os.path.isabs(doc.source) and not os.path.exists(doc.source):
                store.remove_document(doc.id)
                report.results.append(FileResult(doc.source, "removed", "file is gone", doc_id=doc.id))
