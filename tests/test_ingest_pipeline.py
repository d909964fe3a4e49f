"""The ingest pipeline: loading/chunking overlaps encoding, and nothing is lost or reordered.

A small fake embedder (hash-seeded vectors, no model) makes the timing controllable: its first
`encode` call waits until the loader thread has chunked a document that belongs to a later batch.
A serial ingest can never do that, so the overlap assertion fails for it.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from assistant.chunk import Chunk, Chunker
from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import Ingestor, TextItem
from assistant.settings import Settings

DIM = 32


def fake_vector(text: str) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class GatedEmbedder(Embedder):
    """No model. The first encode waits (up to 10 s) until `later_chunked` is set."""

    def __init__(self) -> None:
        super().__init__("all-MiniLM-L6-v2")
        self.name = "fake-hash-32"
        self.later_chunked = threading.Event()
        self.overlapped: bool | None = None
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    @property
    def dim(self) -> int:
        return DIM

    @property
    def max_tokens(self) -> int:
        return 256

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        if self.overlapped is None:
            self.overlapped = self.later_chunked.wait(10)
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        return np.stack([fake_vector(t) for t in texts])


class RecordingChunker:
    def __init__(self, inner: Chunker, embedder: GatedEmbedder, later_marker: str) -> None:
        self.inner, self.embedder, self.later_marker = inner, embedder, later_marker
        self.threads: set[str] = set()

    def chunks(self, segments: Iterable[str]) -> Iterator[Chunk]:
        segments = list(segments)
        self.threads.add(threading.current_thread().name)
        out = list(self.inner.chunks(segments))
        if any(self.later_marker in s for s in segments):
            self.embedder.later_chunked.set()
        return iter(out)


def test_chunking_overlaps_encoding_and_order_is_kept(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", embed_batch_chunks=4, checkpoint_chunks=8)
    embedder = GatedEmbedder()
    texts = [f"Document number {i} talks about topic {i * 7 % 11} in plain words." for i in range(30)]
    texts[5] = "   "  # a bad document: fails alone, the batch goes on
    items = [TextItem(f"doc:{i:02d}", t, f"Title {i}") for i, t in enumerate(texts)]
    ingestor = Ingestor(settings, embedder)
    chunker = RecordingChunker(ingestor.chunker, embedder, later_marker="Document number 20 ")
    ingestor._chunker = chunker  # type: ignore[assignment]

    report = ingestor.ingest_texts(items, progress=False)

    assert embedder.overlapped, "encoding of the first batch never ran while a later document was chunked"
    assert "MainThread" not in chunker.threads and "MainThread" not in embedder.threads
    assert [r.source for r in report.results] == [t.source for t in items]  # report in input order
    assert [r.status for r in report.results] == ["failed" if i == 5 else "added" for i in range(30)]
    assert "empty text" in report.results[5].reason
    assert sum(len(c) for c in embedder.calls) == report.embedded_chunks == 29
    with IndexStore.open(settings.index_dir, embedder.name, DIM) as store:
        chunks = list(store.iter_chunks())
        assert [c.source for c in chunks] == [t.source for i, t in enumerate(items) if i != 5]  # stored in order
        for c in chunks:  # each chunk's vector is its own text's vector
            hits = store.search(fake_vector(c.text), 1)
            assert hits[0][0] == c.id and hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_an_encoder_error_stops_the_ingest_and_commits_nothing_partial(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", embed_batch_chunks=4, checkpoint_chunks=10_000)
    embedder = GatedEmbedder()
    embedder.later_chunked.set()
    calls = 0
    real = embedder.encode

    def failing(texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("encoder broke")
        return real(texts, batch_size, progress)

    embedder.encode = failing  # type: ignore[method-assign]
    items = [TextItem(f"doc:{i:02d}", f"Text {i} about harbours and ferries.") for i in range(20)]
    with pytest.raises(RuntimeError, match="encoder broke"):
        Ingestor(settings, embedder).ingest_texts(items, progress=False)
    # Nothing was committed (no checkpoint reached), so a reopen finds an empty, consistent index.
    fresh = GatedEmbedder()
    fresh.later_chunked.set()
    report = Ingestor(settings, fresh).ingest_texts(items, progress=False)
    assert report.count("added") == 20 and report.embedded_chunks == 20
