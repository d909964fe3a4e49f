"""The PostgreSQL store's keyword side: full-text search (the GIN index finds the chunks with any
query term) ranked in SQL, and the corpus statistics, counted in PostgreSQL per generation.

`keyword_rank` "bm25" (default) computes BM25 from each chunk's stored term counts (`tf`), its
length in terms and the idf: the Lucene formula bm25s uses in the local store, so both stores rank
alike. "ts_rank" uses PostgreSQL's `ts_rank` (normalized by length) weighted by idf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from assistant.index.base import Bm25Params, CorpusStats

Rows = Callable[[str, Any], list[tuple[Any, ...]]]  # the store's query runner: (sql, params) -> rows

_QUERY_TERMS = """
WITH q AS (
    SELECT t.term, plainto_tsquery('simple', t.term) AS query, t.idf
    FROM unnest(%(terms)s::text[], %(idfs)s::float8[]) AS t(term, idf)
)
"""
# BM25 (Lucene variant, as bm25s): idf x tf / (tf + k1 (1 - b + b dl / avgdl)), tf from the stored
# term counts (4x faster than unnesting the tsvector's positions on SciFact).
_BM25_SQL = _QUERY_TERMS + """
SELECT c.id, sum(q.idf * f.tf / (f.tf + %(k1)s * (1 - %(b)s + %(b)s * c.n_terms / %(avgdl)s))) AS score
FROM q JOIN assistant_chunks c ON c.tsv @@ q.query
CROSS JOIN LATERAL (SELECT coalesce((c.tf ->> q.term)::float8, 1) AS tf) AS f
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""
# PostgreSQL's ts_rank per term (normalization 1: divided by 1 + log(length)) x idf, summed.
_TS_RANK_SQL = _QUERY_TERMS + """
SELECT c.id, sum(q.idf * ts_rank(c.tsv, q.query, 1)) AS score
FROM q JOIN assistant_chunks c ON c.tsv @@ q.query
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""
KEYWORD_RANKS = {"bm25": _BM25_SQL, "ts_rank": _TS_RANK_SQL}


class LazyDocumentFrequency:
    """`df.get(term, 0)` for the answerer's idf, counted in PostgreSQL on first use and cached; also
    the chunk count and average chunk length (in terms) of the generation it was made for."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows
        self._cache: dict[str, int] = {}
        n, avg = rows("SELECT COUNT(*), COALESCE(AVG(n_terms), 0) FROM assistant_chunks", None)[0]
        self.n_chunks, self.avg_terms = int(n), float(avg)

    def get(self, term: str, default: int = 0) -> int:
        if term not in self._cache:
            self._cache.update(self._count([term]))
        return self._cache.get(term, default)

    def prefetch(self, terms: Iterable[str]) -> None:
        missing = sorted({t for t in terms if t not in self._cache})
        if missing:
            self._cache.update(self._count(missing))

    def _count(self, terms: Sequence[str]) -> dict[str, int]:
        """Chunks containing each term (title or text)."""
        rows = self._rows(
            "SELECT t.term, (SELECT COUNT(*) FROM assistant_chunks c WHERE c.tsv @@ plainto_tsquery('simple', t.term)) "
            "FROM unnest(%s::text[]) AS t(term)", (list(terms),))
        return {term: int(n) for term, n in rows}


class PostgresKeywordIndex:
    """One generation's keyword search in PostgreSQL, with its (lazily counted) corpus statistics."""

    source = "postgres"
    searchable = True

    def __init__(self, rows: Rows, params: Bm25Params, keyword_rank: str) -> None:
        self._rows = rows
        self._params = params
        self._keyword_rank = keyword_rank
        self._df = LazyDocumentFrequency(rows)
        self.stats = CorpusStats(self._df, self._df.n_chunks)

    def search(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        """Chunks with any of the (stemmed) terms, best first, ranked as `keyword_rank` says."""
        if self._keyword_rank not in KEYWORD_RANKS:
            raise ValueError(f"unknown keyword_rank {self._keyword_rank!r}; use one of {', '.join(KEYWORD_RANKS)}")
        unique = list(dict.fromkeys(t for t in terms if t))
        if not unique or k <= 0:
            return []
        df = self._df
        df.prefetch(unique)
        n = df.n_chunks
        idfs = [float(np.log(1.0 + (n - df.get(t) + 0.5) / (df.get(t) + 0.5))) for t in unique]
        rows = self._rows(KEYWORD_RANKS[self._keyword_rank],
                          {"terms": unique, "idfs": idfs, "k": int(k), "k1": self._params.k1, "b": self._params.b,
                           "avgdl": max(df.avg_terms, 1e-9)})
        return [(int(i), float(score)) for i, score in rows if score > 0]
