"""Hybrid retrieval: FAISS dense search + BM25 (bm25s), fused by reciprocal rank fusion.

Fusion uses ranks, never raw scores, so cosine similarities and BM25 scores need no common
scale. Near-duplicate passages (term-set Jaccard above a threshold) collapse into the best one.
The BM25 index and corpus statistics are built from the store's chunks on first use and
rebuilt when the store's generation changes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import bm25s
import numpy as np

from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.settings import Settings
from assistant.text import content_terms

MODES = ("hybrid", "dense", "bm25")


@dataclass
class Passage:
    chunk_id: int
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    text: str
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class RetrievalResult:
    query: str
    passages: list[Passage]
    timings: dict[str, float] = field(default_factory=dict)
    query_vector: np.ndarray | None = None


class CorpusStats:
    """Term statistics (document frequency, idf) over the indexed chunks."""

    def __init__(self, df: Counter[str], n_docs: int) -> None:
        self.df = df
        self.n_docs = max(n_docs, 1)

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))


class _Lexical:
    def __init__(self, ids: list[int], terms: list[list[str]]) -> None:
        self.ids = ids
        self.terms = [frozenset(t) for t in terms]
        df: Counter[str] = Counter()
        for t in self.terms:
            df.update(t)
        self.stats = CorpusStats(df, len(ids))
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self.bm25: bm25s.BM25 | None = None
        if ids:
            self.bm25 = bm25s.BM25()
            self.bm25.index([t or [""] for t in terms], show_progress=False)


class HybridRetriever:
    def __init__(self, store: IndexStore, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self._lexical: _Lexical | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def lexical(self) -> _Lexical:
        with self._lock:
            generation = self.store.generation
            if self._lexical is None or generation != self._generation:
                self.store.reload_if_changed(self._generation if self._lexical else -1)
                ids: list[int] = []
                terms: list[list[str]] = []
                for chunk in self.store.iter_chunks():
                    ids.append(chunk.id)
                    terms.append(content_terms(f"{chunk.title}\n{chunk.text}"))
                self._lexical = _Lexical(ids, terms)
                self._generation = generation
            return self._lexical

    @property
    def stats(self) -> CorpusStats:
        return self.lexical().stats

    def run(self, query: str, top_k: int | None = None, mode: str = "hybrid") -> RetrievalResult:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        top_k = top_k or self.settings.top_k
        timings: dict[str, float] = {}
        lexical = self.lexical()
        n = self.settings.candidates
        dense: list[tuple[int, float]] = []
        sparse: list[tuple[int, float]] = []
        vector = None
        if mode in ("hybrid", "dense"):
            t0 = time.perf_counter()
            vector = self.embedder.encode_query(query)
            timings["embed_query_ms"] = _ms(t0)
            t0 = time.perf_counter()
            dense = self.store.search(vector, n)
            timings["dense_ms"] = _ms(t0)
        if mode in ("hybrid", "bm25") and lexical.bm25 is not None:
            t0 = time.perf_counter()
            q_terms = content_terms(query)
            if q_terms:
                k = min(n, len(lexical.ids))
                docs, scores = lexical.bm25.retrieve([q_terms], k=k, show_progress=False)
                sparse = [(lexical.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
            timings["bm25_ms"] = _ms(t0)

        t0 = time.perf_counter()
        fused: dict[int, float] = {}
        for ranking in (dense, sparse):
            for rank, (chunk_id, _score) in enumerate(ranking):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (self.settings.rrf_k + rank + 1)
        order = sorted(fused, key=lambda i: -fused[i])
        dense_info = {cid: (rank + 1, score) for rank, (cid, score) in enumerate(dense)}
        sparse_info = {cid: (rank + 1, score) for rank, (cid, score) in enumerate(sparse)}
        kept: list[int] = []
        for chunk_id in order:
            if len(kept) >= top_k:
                break
            if self._near_duplicate(lexical, chunk_id, kept):
                continue
            kept.append(chunk_id)
        records = self.store.chunks(kept)
        passages = []
        for chunk_id in kept:
            rec = records.get(chunk_id)
            if rec is None:
                continue
            d_rank, d_score = dense_info.get(chunk_id, (None, None))
            b_rank, b_score = sparse_info.get(chunk_id, (None, None))
            if d_score is None and vector is not None:
                d_score = self._cosine(vector, chunk_id)
            passages.append(Passage(rec.id, rec.doc_id, rec.title, rec.source, rec.start, rec.end, rec.text,
                                    round(fused[chunk_id], 6), d_score, b_score, d_rank, b_rank))
        timings["fuse_ms"] = _ms(t0)
        return RetrievalResult(query, passages, timings, vector)

    def _cosine(self, vector: np.ndarray, chunk_id: int) -> float | None:
        try:
            return float(np.dot(self.store.vectors.reconstruct(int(chunk_id)), vector))
        except RuntimeError:
            return None

    def _near_duplicate(self, lexical: _Lexical, chunk_id: int, kept: list[int]) -> bool:
        pos = lexical.position.get(chunk_id)
        if pos is None:
            return False
        mine = lexical.terms[pos]
        for other in kept:
            theirs = lexical.terms[lexical.position[other]]
            union = len(mine | theirs)
            if union and len(mine & theirs) / union >= self.settings.near_duplicate_jaccard:
                return True
        return False


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)
