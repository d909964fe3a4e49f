"""Features of each candidate answer unit, for the learned answer scorer (assistant.answer_model).

General signals only, each computed the same way at training time (benchmarks/train_answerer.py
on ../shared/qa) and at question time: the unit's own embedding similarity to the question and
that of its neighbours; lexical overlap (idf-weighted, stemmed), BM25 and word-order overlap of the
unit; the passage's retrieval rank and scores; position; structure (list item, table row); whether
the unit only restates the question; and answer-type compatibility (the question word against
numbers, dates, names and reasons found in the unit but not in the question). Relative versions
(gap to the best candidate, rank) let a pointwise model compare candidates of one question.
English-specific knowledge comes from assistant.english only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from assistant import english
from assistant.retrieve import CorpusStats
from assistant.text import content_terms
from assistant.types import Passage
from assistant.units import Unit

TYPE_FEATURES = tuple(f"asks_{t}" for t in english.ANSWER_TYPES)
FEATURES: tuple[str, ...] = (
    "cos", "cos_gap", "cos_rank", "cos_prev", "cos_next", "cos_mean_gap",
    "passage_dense", "passage_dense_gap", "passage_rank", "passage_fused", "passage_bm25",
    "idf_share", "plain_share", "window_share", "prev_share", "next_share", "passage_best_share", "cos_passage_gap", "bm25", "bm25_gap", "bm25_rank", "bigram_share",
    "missing_idf", "novelty", "novel_terms", "length", "list_item", "table_row", "unit_position",
    "doc_lead", "doc_position", "context_share", "same_doc_as_top", "question_terms",
    *TYPE_FEATURES,
    "type_match", "novel_number", "novel_date", "novel_name", "reason_word", "quote", "reporting_verb",
    "fuzzy_share", "share_rank", "share_gap", "after_best_share", "before_best_share", "best_share_type_match",
)

_NUMBER = re.compile(r"\b\d[\d,.]*\b|\b(" + "|".join(english.NUMBER_WORDS) + r")\b", re.I)
_DATE = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})s?\b|\b(" + "|".join(english.MONTHS + english.DAYS) + r")\b", re.I)
_DURATION = re.compile(r"\b(\d[\d,.]*|" + "|".join(english.NUMBER_WORDS) + r")[\s-]+(" + "|".join(english.TIME_UNITS)
                       + r")\b", re.I)
_REASON = re.compile(r"\b(" + "|".join(english.REASON_WORDS) + r")\b", re.I)
_QUOTE = re.compile(r"[\"\u201c\u201d\u2018]|(?<!\w)'|\u2019(?!\w)")
_REPORTING = re.compile(r"\b(" + "|".join(english.REPORTING_VERBS) + r")\b", re.I)
_WORD = re.compile(r"[\w'\u2019-]+")


# A passage's units and their vectors (one row per unit, unit length).
UnitSource = Callable[[Passage], tuple[tuple[Unit, ...], np.ndarray]]


@dataclass(frozen=True)
class UnitCandidate:
    """One unit of one retrieved passage, with its vector (unit length) and neighbours' vectors."""

    passage: Passage
    rank: int  # the passage's rank in retrieval, 0 = best
    index: int  # the unit's place among its passage's answerable units
    count: int  # answerable units in that passage
    unit: Unit
    vector: np.ndarray
    prev_vector: np.ndarray | None
    next_vector: np.ndarray | None
    window_terms: frozenset[str]  # terms of the neighbouring units and the unit's context (heading, header row)


@lru_cache(maxsize=65536)
def unit_terms(text: str) -> tuple[str, ...]:
    return tuple(content_terms(text))


def _names(text: str) -> set[str]:
    """Lower-cased capitalised words that are not sentence-initial function words (names, by general means)."""
    out = set()
    for i, word in enumerate(_WORD.findall(text)):
        if word[:1].isupper() and word.lower() not in english.FUNCTION_WORDS and (i > 0 or not word.istitle()):
            out.add(word.lower())
    return out


def _variant_in(term: str, terms: set[str]) -> bool:
    """A spelling or inflection variant of a long term: same stem but for the last two letters
    (names transliterated two ways, stems the stemmer leaves apart)."""
    if len(term) < 5:
        return False
    key = term[:-2] if len(term) >= 7 else term[:-1]
    return any(len(t) >= 5 and abs(len(t) - len(term)) <= 2 and t.startswith(key) for t in terms)


@dataclass(frozen=True)
class _Question:
    terms: tuple[str, ...]
    idf: dict[str, float]
    total_idf: float
    max_idf: float
    bigrams: frozenset[tuple[str, str]]
    kind: str
    numbers: frozenset[str]
    names: frozenset[str]
    context_terms: tuple[str, ...]


def _question(question: str, context_terms: list[str], stats: CorpusStats) -> _Question:
    terms = tuple(dict.fromkeys(content_terms(question)))
    idf = {t: stats.idf(t) for t in terms}
    seq = content_terms(question)
    return _Question(terms, idf, sum(idf.values()) or 1.0, max(idf.values(), default=1.0) or 1.0,
                     frozenset(zip(seq, seq[1:], strict=False)), english.question_type(question),
                     frozenset(m.group(0).lower() for m in _NUMBER.finditer(question)),
                     frozenset(w.lower() for w in _WORD.findall(question)[1:] if w[:1].isupper()) | _names(question),
                     tuple(t for t in dict.fromkeys(context_terms) if t not in idf))


def features(question: str, context_terms: list[str], query_vector: np.ndarray,
             candidates: list[UnitCandidate], stats: CorpusStats) -> np.ndarray:
    """A (len(candidates), len(FEATURES)) float32 matrix, columns in FEATURES order."""
    n = len(candidates)
    out = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    q = _question(question, context_terms, stats)
    q_vec = np.asarray(query_vector, dtype=np.float32)
    vectors = np.stack([c.vector for c in candidates]).astype(np.float32)
    cos = vectors @ q_vec
    prev = np.array([float(c.prev_vector @ q_vec) if c.prev_vector is not None else cos[i]
                     for i, c in enumerate(candidates)], dtype=np.float32)
    nxt = np.array([float(c.next_vector @ q_vec) if c.next_vector is not None else cos[i]
                    for i, c in enumerate(candidates)], dtype=np.float32)
    terms = [unit_terms(c.unit.text) for c in candidates]
    lengths = np.array([max(len(t), 1) for t in terms], dtype=np.float32)
    avg_len = float(lengths.mean())
    bm25 = np.zeros(n, dtype=np.float32)
    dense = np.array([c.passage.dense_score or 0.0 for c in candidates], dtype=np.float32)
    fused = np.array([c.passage.score for c in candidates], dtype=np.float32)
    kw = np.array([c.passage.bm25_score or 0.0 for c in candidates], dtype=np.float32)
    col = {name: i for i, name in enumerate(FEATURES)}
    type_col = col["asks_" + q.kind]
    for i, (cand, unit_t) in enumerate(zip(candidates, terms, strict=True)):
        row = out[i]
        tset = set(unit_t)
        own = [t for t in q.terms if t in tset]
        near = [t for t in q.terms if t not in tset and t in cand.window_terms]
        missing = [q.idf[t] for t in q.terms if t not in tset]
        tf: dict[str, int] = {}
        for t in unit_t:
            tf[t] = tf.get(t, 0) + 1
        score = 0.0
        for t in own:
            f = tf[t]
            score += q.idf[t] * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * lengths[i] / avg_len))
        bm25[i] = score / q.total_idf
        text = cand.unit.text
        novel = [t for t in unit_t if t not in q.idf]
        row[col["idf_share"]] = sum(q.idf[t] for t in own) / q.total_idf
        row[col["plain_share"]] = len(own) / max(len(q.terms), 1)
        row[col["window_share"]] = sum(q.idf[t] for t in near) / q.total_idf
        row[col["bigram_share"]] = (len(q.bigrams & set(zip(unit_t, unit_t[1:], strict=False))) / len(q.bigrams)
                                    if q.bigrams else 0.0)
        row[col["missing_idf"]] = max(missing, default=0.0) / q.max_idf
        row[col["novelty"]] = len(novel) / max(len(unit_t), 1)
        row[col["novel_terms"]] = math.log1p(len(set(novel)))
        row[col["length"]] = math.log1p(len(text.split()))
        row[col["list_item"]] = cand.unit.kind == "list_item"
        row[col["table_row"]] = cand.unit.kind == "table_row"
        row[col["unit_position"]] = cand.index / max(cand.count, 1)
        row[col["doc_lead"]] = cand.passage.start == 0 and cand.index == 0
        row[col["doc_position"]] = math.log1p(cand.unit.start / 1000.0)
        if q.context_terms:
            window = tset | cand.window_terms
            row[col["context_share"]] = sum(1 for t in q.context_terms if t in window) / len(q.context_terms)
        row[col["same_doc_as_top"]] = cand.passage.doc_id == candidates[0].passage.doc_id
        row[col["question_terms"]] = math.log1p(len(q.terms))
        row[type_col] = 1.0
        numbers = {m.group(0).lower() for m in _NUMBER.finditer(text)} - q.numbers
        dates = {m.group(0).lower() for m in _DATE.finditer(text)} - q.numbers
        names = _names(text) - q.names
        novel_number = bool(numbers)
        novel_date = bool(dates)
        novel_name = bool(names)
        reason = bool(_REASON.search(text))
        row[col["novel_number"]] = novel_number
        row[col["novel_date"]] = novel_date
        row[col["novel_name"]] = novel_name
        row[col["reason_word"]] = reason
        quote = bool(_QUOTE.search(text))
        reporting = bool(_REPORTING.search(text))
        row[col["quote"]] = quote
        row[col["reporting_verb"]] = reporting
        fuzzy = [t for t in q.terms if t not in tset and _variant_in(t, tset)]
        row[col["fuzzy_share"]] = (sum(q.idf[t] for t in own) + sum(q.idf[t] for t in fuzzy)) / q.total_idf
        match = {"person": novel_name, "place": novel_name, "date": novel_date, "number": novel_number,
                 "duration": bool(_DURATION.search(text)), "reason": reason, "speech": quote or reporting,
                 "entity": novel_name or novel_number or bool(novel), "other": bool(novel)}[q.kind]
        row[col["type_match"]] = match
    cos_order = np.argsort(-cos, kind="stable")
    cos_rank = np.empty(n, dtype=np.float32)
    cos_rank[cos_order] = np.arange(n, dtype=np.float32)
    bm_order = np.argsort(-bm25, kind="stable")
    bm_rank = np.empty(n, dtype=np.float32)
    bm_rank[bm_order] = np.arange(n, dtype=np.float32)
    share = out[:, col["idf_share"]].copy()
    passage_of = np.array([c.rank for c in candidates])
    for i in range(n):
        same = passage_of == passage_of[i]
        if i > 0 and same[i - 1]:
            out[i, col["prev_share"]] = share[i - 1]
        if i + 1 < n and same[i + 1]:
            out[i, col["next_share"]] = share[i + 1]
        out[i, col["passage_best_share"]] = share[same].max()
        out[i, col["cos_passage_gap"]] = cos[i] - cos[same].max()
    share_order = np.argsort(-share, kind="stable")
    share_rank = np.empty(n, dtype=np.float32)
    share_rank[share_order] = np.arange(n, dtype=np.float32)
    best = int(share_order[0])
    out[:, col["share_rank"]] = 1.0 / (1.0 + share_rank)
    out[:, col["share_gap"]] = share - share.max()
    if best + 1 < n and passage_of[best + 1] == passage_of[best]:
        out[best + 1, col["after_best_share"]] = 1.0
    if best > 0 and passage_of[best - 1] == passage_of[best]:
        out[best - 1, col["before_best_share"]] = 1.0
    out[:, col["best_share_type_match"]] = out[best, col["type_match"]]
    out[:, col["cos"]] = cos
    out[:, col["cos_gap"]] = cos - cos.max()
    out[:, col["cos_rank"]] = 1.0 / (1.0 + cos_rank)
    out[:, col["cos_prev"]] = prev
    out[:, col["cos_next"]] = nxt
    out[:, col["cos_mean_gap"]] = cos - cos.mean()
    out[:, col["passage_dense"]] = dense
    out[:, col["passage_dense_gap"]] = dense - dense.max()
    out[:, col["passage_rank"]] = 1.0 / (1.0 + np.array([c.rank for c in candidates], dtype=np.float32))
    out[:, col["passage_fused"]] = fused / (fused.max() or 1.0)
    out[:, col["passage_bm25"]] = kw / (kw.max() or 1.0)
    out[:, col["bm25"]] = bm25
    out[:, col["bm25_gap"]] = bm25 - bm25.max()
    out[:, col["bm25_rank"]] = 1.0 / (1.0 + bm_rank)
    return out


def is_answer_unit(unit: Unit) -> bool:
    """Headings, questions and one-word fragments never answer anything by themselves."""
    text = unit.shown().strip()
    return unit.kind not in ("heading", "code") and not text.endswith("?") and len(unit_terms(unit.text)) >= 2


def build_candidates(passages: list[Passage], units_of: UnitSource) -> list[UnitCandidate]:
    """Every answerable unit of every passage, with its vector and its neighbours' vectors."""
    out: list[UnitCandidate] = []
    for rank, passage in enumerate(passages):
        units, vectors = units_of(passage)
        keep = [i for i, u in enumerate(units) if is_answer_unit(u)]
        title_terms = frozenset(unit_terms(passage.title))
        for j, i in enumerate(keep):
            unit = units[i]
            window: set[str] = set(title_terms)
            for k in (i - 1, i + 1):
                if 0 <= k < len(units):
                    window.update(unit_terms(units[k].text))
            if unit.context:
                window.update(unit_terms(unit.context))
            out.append(UnitCandidate(passage, rank, j, len(keep), unit, vectors[i],
                                     vectors[i - 1] if i > 0 else None,
                                     vectors[i + 1] if i + 1 < len(units) else None, frozenset(window)))
    return out
