"""One long-lived assistant for a server: model and index loaded once, shared by every request.

The HTTP API (`assistant.web`) and the chat UI (`assistant.ui`) both talk to an
`AssistantService`, never to the store directly, so they answer, ingest and remove alike.
Reads run concurrently; writes (uploads, removals) are serialized by one lock, and readers pick
up each committed index generation on their next question.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from assistant.atomic import fsync_dir
from assistant.embed import Embedder
from assistant.feedback import FeedbackStore
from assistant.index import DocumentRecord, index_backend, open_store, read_manifest
from assistant.ingest import Ingestor, IngestReport
from assistant.loaders import is_supported, supported_suffixes
from assistant.pipeline import Assistant
from assistant.settings import Settings
from assistant.types import AskResult, RetrievalResult, StreamEvent

UPLOADS = "uploads"  # folder inside the index dir that keeps uploaded files (they are the sources)
STAGING_PREFIX = ".incoming-"  # uploads/.incoming-*/: an upload's files until its index commit
STALE_STAGING_SECONDS = 3600  # staging folders older than this are left over from a crash: removed at start

log = logging.getLogger(__name__)

# Limits on what a caller may ask, the same for the JSON API, the stream, the Gradio UI and its /ask
# API: `check_question` applies them in one place (the server's request models use the same numbers).
MAX_QUESTION_CHARS = 4000
MAX_HISTORY_ITEMS = 50
MAX_TOP_K = 50
MAX_SEARCH_TOP_K = 100
MAX_OFFSET = 2**62  # character offsets (passages): far past any document, inside SQLite's 64-bit integers
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(ValueError):
    """A question, history or number a caller may not send (answered as 400 with the reason)."""


def check_text(value: object, field: str, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """A string that is valid Unicode (no lone surrogates, no NULs) and at most `max_chars` long."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be a string")
    if len(value) > max_chars:
        raise InputError(f"{field} is {len(value):,} characters; at most {max_chars:,} are allowed")
    if _SURROGATE.search(value):
        raise InputError(f"{field} contains invalid Unicode (a lone surrogate such as \\ud800): send valid UTF-8 text")
    if "\x00" in value:
        raise InputError(f"{field} contains a NUL character: send plain text")
    return value


def check_question(question: object, history: object = None, top_k: object = None,
                   max_top_k: int = MAX_TOP_K, field: str = "question") -> tuple[str, list[str], int | None]:
    """The one validation of a question, its history and top_k (every entry point calls it)."""
    text = check_text(question, field)
    if not text.strip():
        raise InputError(f'{field} is empty: send a non-empty "{field}" string')
    items = [] if history is None else history
    if not isinstance(items, list | tuple):
        raise InputError("history must be a list of earlier questions")
    if len(items) > MAX_HISTORY_ITEMS:
        raise InputError(f"history has {len(items):,} items; at most {MAX_HISTORY_ITEMS} earlier questions are allowed")
    checked = [check_text(h, f"history[{i}]") for i, h in enumerate(items)]
    k: int | None = None
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | float) or top_k != int(top_k):
            raise InputError(f"top_k must be a whole number from 1 to {max_top_k}")
        k = int(top_k)
        if not 1 <= k <= max_top_k:
            raise InputError(f"top_k must be from 1 to {max_top_k}, not {k}")
    return text, checked, k


class UploadError(ValueError):
    """An upload we refuse before touching the index (bad name, type or size)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


MAX_NAME_BYTES = 180  # an upload's stored name, in UTF-8 bytes (file systems allow 255)


def safe_filename(name: str) -> str:
    """The last path component with anything but letters, digits, '.', '-', '_' and spaces replaced,
    shortened to MAX_NAME_BYTES of UTF-8 by cutting the stem: the extension (what the type check
    reads) is kept."""
    base = re.split(r"[\\/]", name or "")[-1].strip().lstrip(".")
    base = re.sub(r"[^\w.\- ]", "_", base)
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, suffix = base.rpartition(".")
        if not dot or not stem or len(suffix) > 16:  # no extension worth keeping
            stem, suffix = base, ""
        tail = (dot + suffix) if suffix else ""
        room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
        base = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .") + tail
    if not base or base in {".", ".."} or base.startswith("."):
        raise UploadError("the upload has no usable file name")
    return base


class AssistantService:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or Embedder(self.settings.model, index_backend(self.settings))
        _ensure_index(self.settings, self.embedder)
        self.assistant = Assistant(self.settings, self.embedder)
        self.ingestor = Ingestor(self.settings, self.embedder)
        self.feedback = FeedbackStore(self.settings.index_dir / "feedback.sqlite")
        self.write_lock = threading.Lock()
        self.ready = False
        self._remove_stale_staging()

    @property
    def uploads_dir(self) -> Path:
        return self.settings.index_dir / UPLOADS

    @property
    def upload_limit(self) -> int:
        """Bytes one upload may hold (ASSISTANT_MAX_UPLOAD_MB): the service's, the API's and the UI's limit."""
        return int(self.settings.max_upload_mb * 1024 * 1024)

    def warm_up(self) -> None:
        self.assistant.warm_up()
        self.ready = True

    # -- reading ------------------------------------------------------------------------------

    def answer_modes(self) -> list[str]:
        """Answer backends a caller may pick per request (the first is the default): extractive
        and each configured LLM backend (assistant.llm.configured_backends)."""
        modes = self.assistant.answer_backends()
        default = self.settings.backend
        return [default, *(m for m in modes if m != default)] if default in modes else modes

    def ask(self, question: str, history: list[str] | None = None, top_k: int | None = None,
            backend: str | None = None) -> AskResult:
        question, checked, top_k = check_question(question, history, top_k)
        _check_backend(backend, self.answer_modes())
        return self.assistant.ask(question, history=checked or history, top_k=top_k, backend=backend)

    def ask_stream(self, question: str, history: list[str] | None = None, top_k: int | None = None,
                   backend: str | None = None) -> Iterator[StreamEvent]:
        """Answer text in pieces, then the full result: an LLM backend streams its tokens (the
        final answer is the verified one; `result.revised` says it differs from the draft), the
        extractive answer streams word by word. "status"/"warning" events may come in between."""
        question, checked, top_k = check_question(question, history, top_k)
        _check_backend(backend, self.answer_modes())
        yield from self.assistant.ask_events(question, history=checked or history, top_k=top_k, backend=backend)

    def search(self, query: str, top_k: int | None = None, mode: str = "hybrid") -> RetrievalResult:
        query, _, top_k = check_question(query, None, top_k, max_top_k=MAX_SEARCH_TOP_K, field="query")
        return self.assistant.search(query, top_k=top_k, mode=mode)

    def documents(self) -> list[DocumentRecord]:
        self.assistant.retriever.lexical()  # picks up a newer generation first
        return self.assistant.store.documents()

    def document_text(self, doc_id: str, start: int, end: int) -> str | None:
        """Characters [start, end) of a document's text, from its stored chunks (for previews)."""
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OFFSET:
                raise InputError(f"{name} must be a character offset from 0 to {MAX_OFFSET}")
        check_text(doc_id, "doc_id", 100)
        chunks = self.assistant.store.document_chunks(doc_id, start, end)
        if not chunks:
            return None
        text, covered = "", start
        for c in chunks:  # chunks overlap; take from each only what the previous ones did not cover
            if c.end > covered:
                text += c.text[max(covered, c.start) - c.start : min(end, c.end) - c.start]
                covered = min(end, c.end)
        return text

    def stats(self) -> dict[str, object]:
        self.assistant.retriever.lexical()
        return {**self.assistant.store.stats(), "ready": self.ready}

    # -- writing ------------------------------------------------------------------------------

    def check_upload(self, filename: str, size: int) -> str:
        """Validate before reading the body further: returns the sanitized name or raises UploadError."""
        name = safe_filename(filename)
        if not is_supported(Path(name)):
            raise UploadError(f"{name}: unsupported file type; upload one of {', '.join(supported_suffixes())}", 415)
        if size > self.upload_limit:
            raise UploadError(f"{name}: {size / 1e6:.1f} MB is over the {self.settings.max_upload_mb:g} MB upload "
                              "limit (ASSISTANT_MAX_UPLOAD_MB)", 413)
        return name

    def ingest_uploads(self, files: list[tuple[str, bytes]]) -> IngestReport:
        """Index uploaded (name, bytes), all-or-nothing per file on disk as in the index.

        Names are sanitized and validated first; nothing is written when any name is refused. The
        files are written to a staging folder (uploads/.incoming-*/, same names) and indexed from
        there under their final paths; only after the index commit is each indexed file moved into
        uploads/ (an atomic rename over the previous copy). Any failure before that (the index
        locked by another writer, a file that fails to parse or is over a limit, an error or a
        crash mid-ingest) leaves uploads/ and the index as they were; the staging folder is removed.
        """
        checked = [(self.check_upload(name, len(data)), data) for name, data in files]
        with self.write_lock:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.uploads_dir))
            try:
                staged: list[tuple[str, Path]] = []
                for name, data in checked:
                    temp = staging / name
                    temp.write_bytes(data)
                    staged.append((str((self.uploads_dir / name).resolve()), temp))
                report = self.ingestor.ingest_staged(staged, progress=False)  # commits, or raises having changed nothing
                indexed = {r.source for r in report.results if r.status in ("added", "updated", "unchanged")}
                for source, temp in staged:
                    if source in indexed:
                        _fsync_file(temp)
                        os.replace(temp, source)
                if indexed:
                    fsync_dir(self.uploads_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self.assistant.retriever.lexical()
        return report

    def _remove_stale_staging(self) -> None:
        """Staging folders a crashed upload left behind (their files were never indexed)."""
        if not self.uploads_dir.is_dir():
            return
        cutoff = time.time() - STALE_STAGING_SECONDS
        for folder in self.uploads_dir.glob(STAGING_PREFIX + "*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    log.info("removed %s, left over from an interrupted upload", folder)
            except OSError:
                continue

    def remove(self, doc_id: str) -> bool:
        """Remove one document (and its uploaded file, if it was an upload). False when unknown."""
        with self.write_lock:
            report = self.ingestor.remove([doc_id])
            removed = [r for r in report.results if r.status == "removed"]
            for r in removed:
                path = Path(r.source)
                if path.parent == self.uploads_dir.resolve():
                    path.unlink(missing_ok=True)
        self.assistant.retriever.lexical()
        return bool(removed)

    def close(self) -> None:
        self.assistant.close()
        self.feedback.close()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _check_backend(backend: str | None, modes: list[str]) -> None:
    if backend is not None and backend not in modes:
        raise ValueError(f"answer backend {backend!r} is unknown or not configured; use one of {', '.join(modes)}")


def _ensure_index(settings: Settings, embedder: Embedder) -> None:
    """Create an empty index when there is none, so a server can start before the first upload."""
    if not read_manifest(settings):
        open_store(settings, embedder.name, embedder.dim, writable=True).close()
