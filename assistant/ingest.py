"""Ingest files (or in-memory texts) into the index, incrementally and crash-safely.

Per file: hash the bytes; skip when the stored hash matches; otherwise load, chunk and queue.
Queued chunks are embedded in large batches (throughput close to raw model encode) and written;
the store commits every `checkpoint_chunks` and at the end. One bad file is recorded as failed
with its reason and never stops the batch.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from assistant.chunk import Chunk, Chunker
from assistant.embed import Embedder
from assistant.index import DocumentRecord, ModelMismatchError, Store, open_store, read_manifest, store_location
from assistant.loaders import LoadedDocument, LoadError, content_hash, is_supported, load
from assistant.settings import Settings

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
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        lines = [f"{counts}; {self.embedded_chunks} chunks embedded in {self.seconds:.1f} s"]
        for r in self.results:
            if r.status in ("failed", "skipped"):
                lines.append(f"  {r.status}: {r.source}: {r.reason}")
        return "\n".join(lines)


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


def document_id(source: str) -> str:
    return "d" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:15]


def collect_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[FileResult]]:
    """Supported files under the paths (folders recurse, hidden entries skipped), plus skip/fail notes."""
    files: list[Path] = []
    notes: list[FileResult] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if any(part.startswith(".") for part in rel.parts) or not child.is_file():
                    continue
                if is_supported(child):
                    files.append(child.resolve())
                else:
                    notes.append(FileResult(str(child.resolve()), "skipped", f"unsupported type {child.suffix or '(none)'}"))
        elif path.is_file():
            if is_supported(path):
                files.append(path.resolve())
            else:
                notes.append(FileResult(str(path.resolve()), "skipped", f"unsupported type {path.suffix or '(none)'}"))
        else:
            notes.append(FileResult(str(path), "failed", "no such file or folder"))
    unique = list(dict.fromkeys(files))
    return unique, notes


class Ingestor:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.model, settings.embed_backend)
        self._chunker: Chunker | None = None

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = Chunker(self.settings.chunk_tokens, self.settings.chunk_overlap, fits=self.embedder.fits)
        return self._chunker

    def open_store(self) -> Store:
        # An index built with this model records its dim: opening with it spares loading the model
        # (about 7 s) when nothing turns out to need embedding. `_flush` checks the model's real dim
        # before anything is written.
        manifest = read_manifest(self.settings)
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
            return content_hash(path), size, lambda: load(path)
        return facts

    def _run(self, items: list[tuple[str, Callable[[], tuple[str, int, Callable[[], LoadedDocument]]]]],
             progress: bool | None, prune: bool) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        show = sys.stderr.isatty() if progress is None else progress
        pending: list[_Pending] = []
        uncommitted = 0
        with self.open_store() as store:
            files_bar = tqdm(total=len(items), desc="files", unit="file", disable=not show, position=0)
            chunks_bar = tqdm(desc="chunks embedded", unit="chunk", disable=not show, position=1)
            try:
                for source, facts in items:
                    files_bar.set_postfix_str(Path(source).name[-40:], refresh=False)
                    result = FileResult(source, "failed")
                    report.results.append(result)
                    try:
                        digest, size, loader = facts()
                        existing = store.document_by_source(source)
                        result.doc_id = document_id(source)
                        if existing and existing.content_hash == digest:
                            result.status, result.chunks = "unchanged", existing.n_chunks
                        else:
                            loaded = loader()
                            chunks = list(self.chunker.chunks(loaded.segments))
                            if not chunks:
                                raise LoadError("no text to index after cleaning")
                            record = DocumentRecord(result.doc_id, source, loaded.title, digest, size,
                                                    len(chunks), time.time())
                            result.status = "updated" if existing else "added"
                            result.chunks = len(chunks)
                            pending.append(_Pending(record, chunks, result))
                    except LoadError as exc:
                        result.status, result.reason = "failed", str(exc)
                    except (OSError, MemoryError, ValueError, RuntimeError) as exc:
                        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
                    files_bar.update(1)
                    if sum(len(p.chunks) for p in pending) >= self.settings.embed_batch_chunks:
                        uncommitted += self._flush(store, pending, report, chunks_bar)
                        pending = []
                    if uncommitted >= self.settings.checkpoint_chunks:
                        store.commit()
                        uncommitted = 0
                uncommitted += self._flush(store, pending, report, chunks_bar)
                if prune:
                    self._prune(store, report)
                store.commit()
            finally:
                files_bar.close()
                chunks_bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _flush(self, store: Store, pending: list[_Pending], report: IngestReport, bar: tqdm) -> int:
        if not pending:
            return 0
        if self.embedder.dim != store.dim:
            raise ModelMismatchError(
                f"index at {store_location(self.settings)} has {store.dim}-dim vectors, but the model "
                f"{self.embedder.name!r} gives {self.embedder.dim}-dim ones. Rebuild: delete "
                f"{store_location(self.settings)} (or pick a new --index-dir / --store) "
                "and run `assistant ingest PATH` again"
            )
        texts = [c.text for p in pending for c in p.chunks]
        vectors = []
        step = max(32, self.settings.embed_batch_chunks)
        for start in range(0, len(texts), step):
            vectors.append(self.embedder.encode(texts[start : start + step]))
            bar.update(min(step, len(texts) - start))
        import numpy as np

        all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, self.embedder.dim), np.float32)
        offset = 0
        for p in pending:
            n = len(p.chunks)
            rows = [(c.ord, c.start, c.end, c.n_tokens, c.text) for c in p.chunks]
            store.put_document(p.record, rows, all_vectors[offset : offset + n])
            offset += n
        report.embedded_chunks += len(texts)
        return len(texts)

    def _prune(self, store: Store, report: IngestReport) -> None:
        for doc in store.documents():
            if os.path.isabs(doc.source) and not os.path.exists(doc.source):
                store.remove_document(doc.id)
                report.results.append(FileResult(doc.source, "removed", "file is gone", doc_id=doc.id))
