"""The synthetic data of benchmarks/bench_scale.py: clustered unit vectors generated BATCH at a
time from a seed (so the same stream can be drawn again for the ground truth), exact top-k over
such a stream, and one made-up text per vector for the store's keyword side."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np

BATCH = 100_000  # vectors generated (and stored) at a time


def synthetic_batches(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(unit vectors, the cluster of each), BATCH at a time; the same seed gives the same stream."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        labels = rng.integers(0, clusters, m)
        out = np.empty((m, dim), dtype=np.float32)
        for row in range(0, m, 10_000):  # the same draws as one (m, dim) call, in 30 MB steps
            part = labels[row : row + 10_000]
            x = centres[part] + noise * rng.standard_normal((len(part), dim)).astype(np.float32)
            out[row : row + len(part)] = x / np.linalg.norm(x, axis=1, keepdims=True)
        yield out, labels


def synthetic_labelled(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors, the cluster of each), all at once (the queries)."""
    parts = list(synthetic_batches(n, dim, clusters, seed, noise))
    return np.concatenate([v for v, _ in parts]), np.concatenate([c for _, c in parts])


def exact_top(queries: np.ndarray, batches: Iterator[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """Positions (in stream order) of each query's k nearest vectors by inner product, exact,
    from a stream of batches (FAISS's exhaustive search per batch, merged)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best = np.zeros((len(queries), 0), dtype=np.int64)
    start = 0
    for vectors, _labels in batches:
        scores, positions = faiss.knn(queries, vectors, min(k, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
        scores, positions = np.hstack([best_scores, scores]), np.hstack([best, positions + start])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best = np.take_along_axis(scores, order, 1), np.take_along_axis(positions, order, 1)
        start += len(vectors)
    return best


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def vocabulary(size: int, seed: int = 7) -> list[str]:
    """Pronounceable made-up words (3 syllables), distinct."""
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < size:
        for row in rng.integers(0, len(_SYLLABLES), (size, 3)):
            words["".join(_SYLLABLES[i] for i in row)] = None
    return list(words)[:size]


class SyntheticTexts:
    """One text per vector: `topic_words` drawn from its cluster's 20-word topic, `background_words`
    Zipf-distributed over the whole vocabulary, shuffled. Same cluster, same topic words, so BM25 and
    the vectors agree roughly, as in real text. `texts(labels)` of successive batches (BATCH each)
    continue one random stream, as one call over all labels would."""

    def __init__(self, clusters: int, seed: int, topic_words: int, background_words: int,
                 vocab_size: int = 30_000) -> None:
        self.vocab = np.asarray(vocabulary(vocab_size), dtype=object)
        self.topics = np.random.default_rng(54321).integers(0, vocab_size, (clusters, 20))
        self.rng = np.random.default_rng(seed)
        self.topic_words, self.background_words, self.vocab_size = topic_words, background_words, vocab_size

    def texts(self, labels: np.ndarray) -> list[str]:
        texts: list[str] = []
        rng = self.rng
        for start in range(0, len(labels), BATCH):
            part = labels[start : start + BATCH]
            topic = self.topics[part[:, None], rng.integers(0, 20, (len(part), self.topic_words))]
            background = (rng.zipf(1.2, (len(part), self.background_words)) - 1) % self.vocab_size
            words = np.concatenate([topic, background], axis=1)
            words = np.take_along_axis(words, rng.permuted(np.tile(np.arange(words.shape[1]), (len(part), 1)), axis=1), 1)
            texts.extend(" ".join(row) for row in self.vocab[words])
        return texts


def synthetic_texts(labels: np.ndarray, clusters: int, seed: int, topic_words: int, background_words: int,
                    vocab_size: int = 30_000) -> list[str]:
    return SyntheticTexts(clusters, seed, topic_words, background_words, vocab_size).texts(labels)
