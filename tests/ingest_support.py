"""What the ingest tests (tests/test_ingest*.py) read back: per-file results of a report, the
chunk texts the store holds, and the source that answers a question best."""

from __future__ import annotations

from pathlib import Path

from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import IngestReport
from assistant.settings import Settings


def by_name(report: IngestReport) -> dict[str, tuple[str, str, int]]:
    return {Path(r.source).name: (r.status, r.reason, r.chunks) for r in report.results}


def chunk_texts(settings: Settings, embedder: Embedder) -> dict[str, list[str]]:
    """Stored chunk texts per source file name."""
    out: dict[str, list[str]] = {}
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        for record in store.iter_chunks():
            out.setdefault(Path(record.source).name, []).append(record.text)
    return out


def top_source(settings: Settings, embedder: Embedder, question: str) -> str:
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        hits = store.search(embedder.encode_query(question), 3)
        assert hits, "search returned nothing"
        return Path(store.chunks([hits[0][0]])[hits[0][0]].source).name
