"""Hybrid retrieval: the store's dense search + the store's keyword search (each store ranks its own
keyword side: bm25s in the local store, full-text BM25 in PostgreSQL), fused by weighted reciprocal
rank fusion (or relative / z-score fusion).

RRF uses ranks, never raw scores, so cosine similarities and BM25 scores need no common scale
("relative" fusion min-max normalizes each list first). Stages are public so a benchmark can tune
fusion on cached candidate lists with the very code `run()` uses: `candidates()`, `fuse()`, `rank()`.
Near-duplicate passages (term-set Jaccard above a threshold) collapse into the best one. The keyword
index (`Store.keyword_index`) is the store's committed generation's, taken again when the generation
changes; `use_keyword_index` swaps in another one (the benchmark's BM25 with other parameters).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.embed import Embedder
from assistant.index import Bm25Params, CorpusStats, KeywordIndex, Store
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import Passage, RetrievalResult

MODES = ("hybrid", "dense", "bm25")
__all__ = ["MODES", "Candidates", "CorpusStats", "HybridRetriever", "LexicalView", "Passage", "RetrievalResult"]


class LexicalView:
    """The keyword side for one generation: the store's keyword index (search, corpus statistics)
    and per chunk its doc id and term set (near-duplicate checks, document aggregation), looked up
    in the store as needed and cached."""

    MAX_CACHED = 200_000

    def __init__(self, index: KeywordIndex, store: Store, title_weight: int) -> None:
        self.index = index
        self._store = store
        self._title_weight = title_weight
        self._docs: dict[int, str] = {}
        self._terms: dict[int, frozenset[str]] = {}

    @property
    def source(self) -> str:
        return self.index.source

    @property
    def stats(self) -> CorpusStats:
        return self.index.stats

    @property
    def searchable(self) -> bool:
        return self.index.searchable

    def search(self, q_terms: list[str], k: int) -> list[tuple[int, float]]:
        """The top k (chunk id, score) for stemmed query terms, scores > 0 only."""
        return self.index.search(q_terms, k)

    def prefetch_docs(self, chunk_ids: Sequence[int]) -> None:
        missing = [c for c in chunk_ids if c not in self._docs]
        if missing:
            if len(self._docs) > self.MAX_CACHED:
                self._docs = {}
            self._docs.update(self._store.chunk_docs(missing))

    def prefetch_terms(self, chunk_ids: Sequence[int]) -> None:
        missing = [c for c in chunk_ids if c not in self._terms]
        if missing:
            if len(self._terms) > self.MAX_CACHED:
                self._terms = {}
            self._terms.update(self._store.chunk_term_sets(missing, self._title_weight))

    def doc_of(self, chunk_id: int) -> str | None:
        if chunk_id not in self._docs:
            self.prefetch_docs([chunk_id])
        return self._docs.get(chunk_id)

    def term_set(self, chunk_id: int) -> frozenset[str] | None:
        if chunk_id not in self._terms:
            self.prefetch_terms([chunk_id])
        return self._terms.get(chunk_id)


@dataclass
class Candidates:
    """The per-retriever candidate lists for one query, best first: (chunk id, score)."""

    dense: list[tuple[int, float]]
    sparse: list[tuple[int, float]]
    vector: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)


class HybridRetriever:
    def __init__(self, store: Store, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self._lexical: LexicalView | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def lexical(self) -> LexicalView:
        """The keyword side of the store's committed generation, with the settings' BM25 parameters."""
        with self._lock:
            generation = self.store.generation
            if self._lexical is None or generation != self._generation:
                self.store.reload_if_changed(self._generation if self._lexical else -1)
                self._lexical = self._view(self.store.keyword_index(Bm25Params.from_settings(self.settings)))
                self._generation = generation
            return self._lexical

    def use_keyword_index(self, index: KeywordIndex) -> None:
        """Search with `index` (made for the store's current generation, e.g. BM25 with other
        parameters while tuning) until the store's generation moves."""
        with self._lock:
            self._lexical = self._view(index)
            self._generation = self.store.generation

    def _view(self, index: KeywordIndex) -> LexicalView:
        return LexicalView(index, self.store, self.settings.bm25_title_weight)

    @property
    def stats(self) -> CorpusStats:
        return self.lexical().stats

    def candidates(self, query: str, mode: str = "hybrid", depth: int | None = None,
                   settings: Settings | None = None) -> Candidates:
        """Dense and/or BM25 candidates, `depth` (default settings.candidates) from each.

        With `prf_weight` > 0 the dense search runs twice: the second time with the query vector
        moved toward the mean vector of the first ranking's top `prf_depth` chunks (Rocchio
        pseudo-relevance feedback; in hybrid mode the first ranking is the fused one, so BM25's
        evidence also steers the dense search)."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        s = settings or self.settings
        lexical = self.lexical()
        n = depth or s.candidates
        timings: dict[str, float] = {}
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
        if mode in ("hybrid", "bm25") and lexical.searchable:
            t0 = time.perf_counter()
            q_terms = content_terms(query)
            if q_terms:
                sparse = lexical.search(q_terms, n)
            timings["bm25_ms"] = _ms(t0)
        if s.prf_weight > 0 and vector is not None and dense:
            t0 = time.perf_counter()
            dense = self._feedback(vector, dense, sparse, n, s)
            timings["prf_ms"] = _ms(t0)
        return Candidates(dense, sparse, vector, timings)

    def _feedback(self, vector: np.ndarray, dense: list[tuple[int, float]], sparse: list[tuple[int, float]],
                  n: int, s: Settings) -> list[tuple[int, float]]:
        first = self.fuse(dense, sparse, s)
        top = sorted(first, key=lambda i: -first[i])[: s.prf_depth]
        try:
            vectors = self.store.vectors_of(top)
        except KeyError:
            return dense
        moved = vector + s.prf_weight * vectors.mean(axis=0)
        moved /= max(float(np.linalg.norm(moved)), 1e-12)
        return self.store.search(moved.astype(np.float32), n)

    def fuse(self, dense: list[tuple[int, float]], sparse: list[tuple[int, float]],
             settings: Settings | None = None) -> dict[int, float]:
        """Fused score per candidate chunk (higher is better), as configured by the settings."""
        s = settings or self.settings
        fused: dict[int, float] = {}
        weighted = [(dense, s.dense_weight), (sparse, s.bm25_weight)]
        if not dense or not sparse:  # one retriever alone: keep its own order
            weighted = [(dense or sparse, 1.0)]
        if s.fusion == "rrf":
            for ranking, weight in weighted:
                for rank, (chunk_id, _score) in enumerate(ranking):
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (s.rrf_k + rank + 1)
        elif s.fusion == "relative":
            for ranking, weight in weighted:
                if not ranking:
                    continue
                top, low = ranking[0][1], ranking[-1][1]
                span = top - low
                for chunk_id, score in ranking:
                    norm = (score - low) / span if span > 0 else 1.0
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * norm
        elif s.fusion == "zscore":
            for ranking, weight in weighted:
                if not ranking:
                    continue
                values = np.asarray([score for _cid, score in ranking], dtype=np.float64)
                mean, std = float(values.mean()), float(values.std())
                for chunk_id, score in ranking:
                    norm = (score - mean) / std if std > 0 else 0.0
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * (norm + 3.0)
        else:
            raise ValueError(f"unknown fusion {s.fusion!r}; use rrf, relative or zscore")
        if s.doc_weight:
            lexical = self.lexical()
            lexical.prefetch_docs(list(fused))
            per_doc: dict[str | None, float] = {}
            for chunk_id, score in fused.items():
                doc = lexical.doc_of(chunk_id)
                per_doc[doc] = per_doc.get(doc, 0.0) + score
            fused = {cid: score + s.doc_weight * (per_doc[lexical.doc_of(cid)] - score)
                     for cid, score in fused.items()}
        return fused

    def rank(self, dense: list[tuple[int, float]], sparse: list[tuple[int, float]], top_k: int,
             settings: Settings | None = None) -> list[tuple[int, float]]:
        """Fuse, order, and collapse near-duplicates: the final (chunk id, fused score) list."""
        fused = self.fuse(dense, sparse, settings)
        lexical = self.lexical()
        threshold = (settings or self.settings).near_duplicate_jaccard
        kept: list[int] = []
        order = sorted(fused, key=lambda i: -fused[i])
        lexical.prefetch_terms(order[: 2 * top_k + 10])
        for chunk_id in order:
            if len(kept) >= top_k:
                break
            if self._near_duplicate(lexical, chunk_id, kept, threshold):
                continue
            kept.append(chunk_id)
        return [(cid, fused[cid]) for cid in kept]

    def run(self, query: str, top_k: int | None = None, mode: str = "hybrid",
            candidates: int | None = None) -> RetrievalResult:
        """The top_k passages; `candidates` per retriever overrides settings.candidates for this call."""
        top_k = top_k or self.settings.top_k
        found = self.candidates(query, mode, candidates)
        timings = found.timings
        t0 = time.perf_counter()
        ranked = self.rank(found.dense, found.sparse, top_k)
        dense_info = {cid: (rank + 1, score) for rank, (cid, score) in enumerate(found.dense)}
        sparse_info = {cid: (rank + 1, score) for rank, (cid, score) in enumerate(found.sparse)}
        records = self.store.chunks([cid for cid, _ in ranked])
        passages = []
        for chunk_id, fused in ranked:
            rec = records.get(chunk_id)
            if rec is None:
                continue
            d_rank, d_score = dense_info.get(chunk_id, (None, None))
            b_rank, b_score = sparse_info.get(chunk_id, (None, None))
            if d_score is None and found.vector is not None:
                d_score = self._cosine(found.vector, chunk_id)
            passages.append(Passage(rec.id, rec.doc_id, rec.title, rec.source, rec.start, rec.end, rec.text,
                                    round(fused, 6), d_score, b_score, d_rank, b_rank))
        timings["fuse_ms"] = _ms(t0)
        return RetrievalResult(query, passages, timings, found.vector)

    def _cosine(self, vector: np.ndarray, chunk_id: int) -> float | None:
        try:
            return float(np.dot(self.store.vectors_of([int(chunk_id)])[0], vector))
        except KeyError:
            return None

    def _near_duplicate(self, lexical: LexicalView, chunk_id: int, kept: list[int], threshold: float) -> bool:
        mine = lexical.term_set(chunk_id)
        if mine is None:
            return False
        for other in kept:
            theirs = lexical.term_set(other)
            if theirs is None:
                continue
            union = len(mine | theirs)
            if union and len(mine & theirs) / union >= threshold:
                return True
        return False


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)
