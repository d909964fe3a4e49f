"""The local store's keyword side: BM25 (bm25s) over the chunks' stored terms.

A generation's index is saved at commit (`bm25_build.build_bm25`) and memory-mapped by readers
(`Bm25Index.load`); with BM25 parameters other than the saved ones it is built in memory from the
stored terms (`KeywordCorpus.bm25`) by the same code. Both give bm25s's own scores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from assistant.index.base import CorpusStats
from assistant.index.bm25_build import bm25_in_memory


class Bm25Index:
    """One generation's BM25 over the local store's chunks, with its corpus statistics."""

    def __init__(self, ids: Sequence[int], bm25: bm25s.BM25 | None, source: str) -> None:
        self.ids = ids
        self.bm25 = bm25
        self.source = source
        df: Counter[str] = Counter()
        if bm25 is not None:
            per_token = np.diff(np.asarray(bm25.scores["indptr"]))
            df = Counter({token: int(per_token[i]) for token, i in bm25.vocab_dict.items() if token})
        self.stats = CorpusStats(df, len(ids))

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        """A BM25 index saved by the store at commit (memory-mapped), with its chunk ids."""
        bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return cls(np.load(folder / "chunk_ids.npy"), bm25, "loaded")

    @property
    def searchable(self) -> bool:
        return self.bm25 is not None

    def search(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        """The top k (chunk id, score) for stemmed query terms, scores > 0 only."""
        if self.bm25 is None:
            return []
        docs, scores = self.bm25.retrieve([terms], k=min(k, len(self.ids)), show_progress=False)
        return [(int(self.ids[int(d)]), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


@dataclass
class KeywordCorpus:
    """Every chunk's BM25 terms (title terms first), read once: BM25 for any k1 and b from them
    (the benchmark tunes k1 and b without reading the store again)."""

    ids: list[int]
    terms: list[list[str]]

    def bm25(self, k1: float, b: float) -> Bm25Index:
        """BM25 built in memory, as the store builds the one it saves."""
        return Bm25Index(self.ids, bm25_in_memory(self.terms, k1, b) if self.ids else None, "built")
