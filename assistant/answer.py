"""Extractive answers: the retrieved unit (sentence, list item, table row) that answers, cited.

Every answerable unit of the top passages is a candidate (assistant.units; headings never are).
Each gets the general features of assistant.answer_features, from its own vector (computed at
ingest from the chunk's forward pass and stored with its span; computed and cached here for
indexes without them) and the passage's retrieval scores. The learned scorer
(assistant.answer_model, fitted on public QA data by benchmarks/train_answerer.py) ranks them; its
calibrator turns the best one's signals into P(this answers the question). Below the abstain
threshold (the model's own, chosen on held-out training articles, unless a setting overrides it)
the assistant says the documents do not hold the answer. The answer is the unit's display text
(markup removed) followed by `[n]`; `n` maps to a citation with the exact character span quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from assistant.answer_features import UnitCandidate, build_candidates, features
from assistant.answer_model import AnswerModel, calibration_signals, shipped_model
from assistant.condense import Condensed, needs_context
from assistant.retrieve import CorpusStats
from assistant.text import content_terms
from assistant.types import Answer, Candidate, Citation, Passage, Span
from assistant.units import Unit, split_units

if TYPE_CHECKING:
    from assistant.embed import Embedder
    from assistant.index import Store
    from assistant.settings import Settings

ANSWERERS = ("rules", "learned")

NO_ANSWER = "I could not find an answer to that in the indexed documents."


@dataclass
class Scored:
    """One question's candidates, their scores and the calibrated confidence of the best one."""

    candidates: list[UnitCandidate]
    scores: np.ndarray
    confidence: float


class LearnedAnswerer:
    def __init__(self, store: Store | None = None, embedder: Embedder | None = None,
                 abstain_threshold: float | None = None, max_sentences: int = 1,
                 model: AnswerModel | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self._model = model
        self._threshold = abstain_threshold
        self.max_sentences = max_sentences

    @property
    def model(self) -> AnswerModel:
        if self._model is None:
            self._model = shipped_model()
        return self._model

    @property
    def abstain_threshold(self) -> float:
        """The setting, or (None or negative) the model's own threshold, chosen on held-out training data."""
        return self.model.threshold if self._threshold is None or self._threshold < 0 else self._threshold

    def units_of(self, passages: list[Passage]) -> dict[int, tuple[tuple[Unit, ...], np.ndarray]]:
        """Units and vectors per chunk: stored ones when their spans match today's units, else
        pooled from the chunk now (cached by the embedder)."""
        stored = self.store.unit_vectors([p.chunk_id for p in passages]) if self.store is not None else {}
        out: dict[int, tuple[tuple[Unit, ...], np.ndarray]] = {}
        for p in passages:
            units = split_units(p.text, p.start)
            spans = [(u.start, u.end) for u in units]
            got = stored.get(p.chunk_id)
            if got is not None and len(got[0]) == len(spans) and [tuple(s) for s in got[0].tolist()] == spans:
                out[p.chunk_id] = (units, got[1])
            elif not units:
                out[p.chunk_id] = (units, np.zeros((0, 1), dtype=np.float32))
            else:
                if self.embedder is None:
                    raise RuntimeError("this index has no unit vectors and the answerer has no embedder")
                out[p.chunk_id] = (units, self.embedder.unit_vectors_for(
                    p.text, [(a - p.start, b - p.start) for a, b in spans]))
        return out

    def prepare(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats,
                query_vector: np.ndarray | None = None) -> tuple[list[UnitCandidate], np.ndarray]:
        """The candidate units and their feature rows (the scorer's input; training uses this too)."""
        if query_vector is None:
            if self.embedder is None:
                raise RuntimeError("the answerer needs the question's vector or an embedder")
            query_vector = self.embedder.encode_query(condensed.standalone)
        table = self.units_of(passages)
        candidates = build_candidates(passages, lambda p: table[p.chunk_id])
        return candidates, features(condensed.question, condensed.context_terms, query_vector, candidates, stats)

    def score(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats,
              query_vector: np.ndarray | None = None) -> Scored:
        candidates, x = self.prepare(condensed, passages, stats, query_vector)
        scores = self.model.unit_scores(x)
        return Scored(candidates, scores, self.model.confidence(calibration_signals(scores, x)))

    def run(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats,
            query_vector: np.ndarray | None = None) -> Answer:
        return self.decide(self.score(condensed, passages, stats, query_vector))

    def decide(self, scored: Scored) -> Answer:
        """Answer with the best unit(s), or abstain below the threshold."""
        order = np.argsort(-scored.scores, kind="stable")
        ranked = [Candidate(scored.candidates[i].passage, _span(scored.candidates[i].unit),
                            round(float(scored.scores[i]), 4)) for i in order[:10]]
        confidence = round(scored.confidence, 4)
        if not len(order) or scored.confidence < self.abstain_threshold:
            return Answer(NO_ANSWER, True, [], confidence, ranked)
        chosen = [int(order[0])]
        best = float(scored.scores[order[0]])
        for i in order[1:]:
            if len(chosen) >= self.max_sentences or float(scored.scores[i]) < best - 1.0:
                break
            if any(_overlaps(scored.candidates[i], scored.candidates[j]) or
                   _same_text(scored.candidates[i], scored.candidates[j]) for j in chosen):
                continue
            chosen.append(int(i))
        citations: list[Citation] = []
        parts: list[str] = []
        for i in chosen:
            cand = scored.candidates[i]
            p, unit = cand.passage, cand.unit
            n = len(citations) + 1
            citations.append(Citation(n, p.chunk_id, p.doc_id, p.title, p.source, unit.start, unit.end, unit.text))
            parts.append(f"{shown_unit(unit, p, self.store)} [{n}]")
        return Answer(" ".join(parts), False, citations, confidence, ranked)


def unresolved_reference(condensed: Condensed) -> bool:
    """"Who wrote this?" with no conversation before it: the question names nothing but a word
    pointing back, so no passage can be known to answer it (both answerers abstain)."""
    return (condensed.standalone == condensed.question and needs_context(condensed.question)
            and len(content_terms(condensed.question)) <= 1)


def _span(unit: Unit) -> Span:
    return Span(unit.start, unit.end, unit.text)


_TABLE_LINE = re.compile(r"^\s*\|")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
HEADER_LOOKBACK = 4000  # characters before a chunk searched for the header row of a table it starts in


def shown_unit(unit: Unit, passage: Passage, store: Store | None) -> str:
    """A unit's display text; a table row whose chunk starts below the table's header row is shown
    with that header, read from the document's earlier text ("setting: X; default: 160")."""
    if unit.kind == "table_row" and not unit.context and store is not None:
        header = table_header(store, passage)
        if header:
            rows = split_units(f"{header}\n|---|\n{unit.text}\n", 0)
            if rows and rows[-1].kind == "table_row" and rows[-1].context:
                return display_text(rows[-1].shown())
    return display_text(unit.shown())


def table_header(store: Store, passage: Passage) -> str | None:
    """The header row of the table the passage starts inside, from the text just before it."""
    start = max(0, passage.start - HEADER_LOOKBACK)
    chars = ["\n"] * (passage.start - start)  # gaps (a dropped repeated line) read as line breaks
    for chunk in store.document_chunks(passage.doc_id, start, passage.start):
        lo, hi = max(chunk.start, start), min(chunk.end, passage.start)
        if lo < hi:
            chars[lo - start : hi - start] = chunk.text[lo - chunk.start : hi - chunk.start]
    before = "".join(chars)
    lines = before.split("\n")
    if lines and not lines[-1].strip():
        lines.pop()
    while lines and _TABLE_LINE.match(lines[-1]) and not _TABLE_SEPARATOR.match(lines[-1]):
        lines.pop()
    if len(lines) >= 2 and _TABLE_SEPARATOR.match(lines[-1]) and _TABLE_LINE.match(lines[-2]):
        return lines[-2]
    return None


def display_text(text: str) -> str:
    """`text` on one line, without a leading list bullet."""
    return " ".join(text.split()).lstrip("-*\u2022 ").strip()


def _overlaps(a: UnitCandidate, b: UnitCandidate) -> bool:
    return a.passage.doc_id == b.passage.doc_id and a.unit.start < b.unit.end and b.unit.start < a.unit.end


def _same_text(a: UnitCandidate, b: UnitCandidate) -> bool:
    ta, tb = set(content_terms(a.unit.text)), set(content_terms(b.unit.text))
    return bool(ta) and len(ta & tb) / len(ta | tb) > 0.7


class Answerer(Protocol):
    """What the pipeline and the generative answerer need from an extractive answerer."""

    max_sentences: int

    @property
    def abstain_threshold(self) -> float: ...

    def run(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats,
            query_vector: np.ndarray | None = None) -> Answer: ...


def make_answerer(settings: Settings, store: Store | None = None, embedder: Embedder | None = None) -> Answerer:
    """The extractive answerer the settings name: "learned" (assistant.answer_model) or "rules"."""
    if settings.answerer == "learned":
        return LearnedAnswerer(store, embedder, settings.abstain_threshold, settings.max_answer_sentences)
    if settings.answerer == "rules":
        from assistant.answer_rules import RuleAnswerer

        return RuleAnswerer(settings.abstain_threshold, settings.max_answer_sentences, store)
    raise ValueError(f"unknown answerer {settings.answerer!r}: use one of {', '.join(ANSWERERS)}")
