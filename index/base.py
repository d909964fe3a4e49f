"""What every store offers, so ingest, retrieval, the server and the benchmark use none in particular.

A store holds documents, chunks with character spans, one vector per chunk (dense search) and the
keyword side: `keyword_index(params)` gives the committed generation's keyword ranking, made and
ranked by the store itself (the local store's bm25s index, PostgreSQL's full-text search), with
the corpus statistics (document frequency, idf) the answerers use.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from assistant.index.unit_codec import UnitRows
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import ChunkRecord, DocumentRecord


@dataclass(frozen=True)
class Bm25Params:
    """The BM25 parameters a keyword index is ranked with (title terms `title_weight` times first)."""

    k1: float
    b: float
    title_weight: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Bm25Params:
        return cls(settings.bm25_k1, settings.bm25_b, settings.bm25_title_weight)

    def key(self) -> str:
        """As recorded beside a saved BM25 index, to tell whether it was built with these parameters."""
        return json.dumps({"k1": float(self.k1), "b": float(self.b), "title_weight": int(self.title_weight),
                           "format": 1}, sort_keys=True)


@lru_cache(maxsize=4096)
def _title_terms_cached(title: str) -> tuple[str, ...]:
    return tuple(content_terms(title))


def title_terms(title: str) -> list[str]:
    """A title's BM25 terms, as both stores put them in front of a chunk's (cached: every chunk of
    a document repeats its title)."""
    return list(_title_terms_cached(title))


class DocumentFrequency(Protocol):
    def get(self, term: str, default: int = 0, /) -> int: ...


class CorpusStats:
    """Term statistics (document frequency, idf) over the indexed chunks (`df` may count lazily)."""

    def __init__(self, df: DocumentFrequency | Counter[str], n_docs: int) -> None:
        self.df = df
        self.n_docs = max(n_docs, 1)

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))


class KeywordIndex(Protocol):
    """One committed generation's keyword side, ranked by the store that made it."""

    source: str  # how it came to be: "loaded" (saved at commit), "built" (in memory), "postgres"
    stats: CorpusStats

    @property
    def searchable(self) -> bool: ...
    def search(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        """The top k (chunk id, score > 0) for stemmed query terms."""
        ...


class Store(Protocol):
    """What the rest of the assistant needs from a store (both stores pass one test suite)."""

    dim: int

    @property
    def generation(self) -> int: ...
    def reload_if_changed(self, generation: int) -> bool: ...
    def documents(self) -> list[DocumentRecord]: ...
    def document(self, doc_id: str) -> DocumentRecord | None: ...
    def document_by_source(self, source: str) -> DocumentRecord | None: ...
    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]: ...
    def document_chunks(self, doc_id: str, start: int = 0, end: int | None = None) -> list[ChunkRecord]: ...
    def iter_chunks(self) -> Iterator[ChunkRecord]: ...
    def stats(self) -> dict[str, object]: ...
    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Dense search: the k nearest chunks by inner product, best first."""
        ...
    def keyword_index(self, params: Bm25Params) -> KeywordIndex:
        """Keyword search and corpus statistics of the committed generation."""
        ...
    def vectors_of(self, ids: Sequence[int]) -> np.ndarray: ...
    def chunk_docs(self, ids: Sequence[int]) -> dict[int, str]: ...
    def chunk_term_sets(self, ids: Sequence[int], title_weight: int) -> dict[int, frozenset[str]]: ...
    def unit_vectors(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per chunk id that has stored units: (absolute spans int32 (n, 2), float32 vectors (n, dim))."""
        ...
    def put_document(self, doc: DocumentRecord, chunks: Iterable[tuple[int, int, int, int, str]],
                     vectors: np.ndarray, units: UnitRows | None = None) -> None: ...
    def remove_document(self, doc_id: str) -> bool: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
