"""BM25 built from a stream of term lists and saved in bm25s's format (read by `bm25s.BM25.load`).

Why: `bm25s.BM25.index` takes the whole corpus as Python lists of term strings and walks it three
times; at 1M chunks x 40 terms that is 40M string objects (several GB). Here terms are interned to
ids as they arrive and each chunk keeps only its (term id, count) pairs in numpy arrays (12 bytes a
pair); the score matrix is then computed and written one block of columns at a time.

The scores are bm25s's (method "lucene", the default, with the same float64 arithmetic cast to
float32), and the saved arrays are what `bm25s.BM25.save` writes for the same corpus, up to the
numbering of the vocabulary (checked against bm25s in the tests).
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import bm25s
import numpy as np

BATCH_CHUNKS = 8192  # chunks counted together (np.unique over their term ids)
BLOCK_ENTRIES = 4_000_000  # score-matrix entries computed and written at once (48 MB of work arrays)


class _Postings:
    """(chunk, term id, count) for every distinct term of every chunk, in chunk order."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.lengths = array("q")  # terms per chunk, repeats included
        self._columns: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        self._batch: list[int] = []
        self._batch_start = 0

    def add(self, terms: list[str]) -> None:
        terms = terms or [""]  # an empty chunk counts as one empty term (bm25s is given [""] for it)
        vocab = self.vocab
        self._batch.extend([vocab.setdefault(t, len(vocab)) for t in terms])
        self.lengths.append(len(terms))
        if len(self.lengths) - self._batch_start >= BATCH_CHUNKS:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        term_ids = np.asarray(self._batch, dtype=np.int64)
        lengths = np.frombuffer(self.lengths, dtype=np.int64)[self._batch_start :]
        chunks = np.repeat(np.arange(self._batch_start, len(self.lengths), dtype=np.int64), lengths)
        del lengths  # a view would keep `self.lengths` from growing
        keys, counts = np.unique((chunks << 32) | term_ids, return_counts=True)  # sorted: chunk, then term
        for column, values in zip(self._columns, (keys >> 32, keys & 0xFFFFFFFF, counts), strict=True):
            column.append(values.astype(np.int32))
        self._batch, self._batch_start = [], len(self.lengths)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk, term, count) arrays; each column's parts are freed once it is joined."""
        self._flush()
        joined = []
        for column in self._columns:
            joined.append(np.concatenate(column) if column else np.zeros(0, np.int32))
            column.clear()
        return joined[0], joined[1], joined[2]


def _lucene_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """bm25s's Lucene idf, computed as it does (Python floats), as float32."""
    return np.asarray([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()],
                      dtype=np.float32)


def _column_blocks(df: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive term-id ranges [lo, hi) holding about BLOCK_ENTRIES entries each."""
    blocks, lo, filled = [], 0, 0
    for term, count in enumerate(df.tolist()):
        filled += count
        if filled >= BLOCK_ENTRIES:
            blocks.append((lo, term + 1))
            lo, filled = term + 1, 0
    if lo < len(df):
        blocks.append((lo, len(df)))
    return blocks


def _npy_writer(path: Path, dtype: type, length: int) -> BinaryIO:
    """An open .npy file of `length` values, header written; the caller writes the values."""
    handle = open(path, "wb")
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)})
    return handle


def build_bm25(term_lists: Iterable[list[str]], k1: float, b: float, folder: Path) -> int:
    """Index every term list (one per chunk, in order) and save the BM25 index into `folder`
    (created). Returns the number of chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    scoring = _Scoring.of(term_lists, k1, b)
    with (_npy_writer(folder / "data.csc.index.npy", np.float32, scoring.entries) as data,
          _npy_writer(folder / "indices.csc.index.npy", np.int32, scoring.entries) as indices):
        for scores, chunks in scoring.blocks():
            data.write(scores.tobytes())
            indices.write(chunks.tobytes())
    np.save(folder / "indptr.csc.index.npy", scoring.indptr)
    (folder / "vocab.index.json").write_text(json.dumps(scoring.vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "params.index.json").write_text(json.dumps(_bm25s_params(k1, b, scoring.n_docs), indent=4))
    return scoring.n_docs


def bm25_in_memory(term_lists: Iterable[list[str]], k1: float, b: float) -> bm25s.BM25:
    """The index `build_bm25` saves, built in memory: what `bm25s.BM25.load` would give for it."""
    scoring = _Scoring.of(term_lists, k1, b)
    parts = list(scoring.blocks())
    params = _bm25s_params(k1, b, scoring.n_docs)
    del params["version"], params["num_docs"]
    model = bm25s.BM25(**params)
    model.vocab_dict = scoring.vocab
    model.unique_token_ids_set = set(scoring.vocab.values())
    model.nonoccurrence_array = None
    model.scores = {"data": np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.float32),
                    "indices": np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32),
                    "indptr": scoring.indptr, "num_docs": scoring.n_docs}
    return model


class _Scoring:
    """bm25s's score matrix (CSC: a column per term) of the postings, a block of columns at a time."""

    def __init__(self, postings: _Postings, k1: float, b: float) -> None:
        self.chunk, self.term, self.count = postings.arrays()
        self.vocab, lengths = postings.vocab, np.frombuffer(postings.lengths, dtype=np.int64)
        self.n_docs = len(lengths)
        self.entries = len(self.term)
        self.df = np.bincount(self.term, minlength=len(self.vocab))
        self.idf = _lucene_idf(self.df, self.n_docs)
        # bm25s: tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf), in float64 (l_avg is a numpy float64)
        self.length_norm = k1 * ((1 - b) + b * lengths / lengths.mean()) if self.n_docs else np.zeros(0)
        self.indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        np.cumsum(self.df, out=self.indptr[1:])
        if "" not in self.vocab:  # bm25s adds the empty token after the score matrix (no column)
            self.vocab[""] = len(self.vocab)

    @classmethod
    def of(cls, term_lists: Iterable[list[str]], k1: float, b: float) -> _Scoring:
        """The scoring of every term list (one per chunk, in order)."""
        postings = _Postings()
        for terms in term_lists:
            postings.add(terms)
        return cls(postings, k1, b)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(float32 scores, int32 chunk positions) per block of term columns, in column order."""
        chunk, term = self.chunk, self.term
        for lo, hi in _column_blocks(self.df):
            picked = np.flatnonzero((term >= lo) & (term < hi))
            picked = picked[np.argsort(term[picked], kind="stable")]  # by term, chunks ascending within
            tf = self.count[picked].astype(np.float64)
            scores = self.idf[term[picked]] * (tf / (self.length_norm[chunk[picked]] + tf))
            yield scores.astype(np.float32), chunk[picked]


def _bm25s_params(k1: float, b: float, n_docs: int) -> dict[str, object]:
    """The parameters file as `bm25s.BM25.save` writes it."""
    model = bm25s.BM25(k1=k1, b=b)
    if model.method != "lucene" or model.idf_method != "lucene":
        raise RuntimeError(f"bm25s defaults changed (method {model.method!r}): update index/bm25_build.py")
    return {"k1": model.k1, "b": model.b, "delta": model.delta, "method": model.method,
            "idf_method": model.idf_method, "dtype": model.dtype, "int_dtype": model.int_dtype,
            "num_docs": n_docs, "version": bm25s.__version__, "backend": model.backend}
