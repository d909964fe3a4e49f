"""Extractive answers: the retrieved sentences that best answer the question, each cited.

Sentences of the top passages are grouped into units (a line ending in ':' joins what follows)
and scored by:
- coverage: idf-weighted share of the question's terms in the unit, plus half credit for terms
  found just before it (the two previous units and the nearest heading) — the answer often
  sits right under the sentence that names the topic;
- the passage's dense cosine to the question;
- for follow-ups, how much of the earlier question's topic is in or near the unit;
- a small bonus when the unit has the kind of thing asked for (a number for "how many",
  a date for "when", a duration for "how long", a quote or speech verb for "what did X say").
The best units become the answer, each followed by `[n]`; `n` maps to a citation with the exact
character span quoted. A unit that only restates the question's words is extended with the next
sentence. Below `abstain_threshold` (calibrated on a golden set) the assistant abstains.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from assistant.condense import Condensed
from assistant.retrieve import CorpusStats, Passage
from assistant.text import Span, content_terms, split_sentences

NO_ANSWER = "I could not find an answer to that in the indexed documents."


@dataclass
class Citation:
    n: int
    chunk_id: int
    doc_id: str
    title: str
    source: str
    start: int  # character span of the quoted text in the document's text
    end: int
    quote: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Candidate:
    passage: Passage
    span: Span
    score: float
    coverage: float
    next_span: Span | None = None  # the following sentence, for units that only echo the question


@dataclass
class ExtractiveAnswer:
    text: str
    abstained: bool
    citations: list[Citation]
    confidence: float
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class _Unit:
    span: Span
    terms: set[str]
    heading: bool


_MONTHS = r"january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_NUMBER_WORDS = r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|dozens|hundred|hundreds|thousand|thousands|million|millions|billion|several|half"
_EXPECTS: list[tuple[re.Pattern[str], re.Pattern[str]]] = [
    (re.compile(r"\bhow (many|much)\b|\bwhat (number|percentage|share|amount)\b", re.I),
     re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)),
    (re.compile(r"\bhow long\b", re.I),
     re.compile(r"\b(\d+|" + _NUMBER_WORDS + r")[\s\u2013\u2014-]*(\d+\s*)?(year|month|week|day|hour|minute|decade)s?\b", re.I)),
    (re.compile(r"\bwhen\b|\bwhat (date|year|day|time)\b", re.I),
     re.compile(rf"\b(1[89]\d\d|20\d\d|{_MONTHS}|{_DAYS}|yesterday|today|tomorrow|last (week|month|year))\b", re.I)),
    (re.compile(r"\bwhat did .+ (say|said|tell|write|call|describe)\b|\bhow did .+ (describe|call|respond|react|reply)\b", re.I),
     re.compile(r"[\"\u201c\u201d\u2018\u2019]|\b(said|says|say|told|wrote|called|described|labelled|labeled|stated|responded|replied|added|insisted|warned)\b", re.I)),
]


class ExtractiveAnswerer:
    def __init__(self, abstain_threshold: float = 0.45, max_sentences: int = 2) -> None:
        self.abstain_threshold = abstain_threshold
        self.max_sentences = max_sentences

    def score(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats) -> list[Candidate]:
        q_terms = list(dict.fromkeys(content_terms(condensed.question)))
        c_terms = [t for t in condensed.context_terms if t not in q_terms]
        q_idf = {t: stats.idf(t) for t in q_terms}
        c_idf = {t: stats.idf(t) for t in c_terms}
        q_total = sum(q_idf.values()) or 1.0
        c_total = sum(c_idf.values()) or 1.0
        expects = [shape for asks, shape in _EXPECTS if asks.search(condensed.question)]
        candidates: list[Candidate] = []
        for rank, passage in enumerate(passages):
            units = _units(passage)
            title_terms = set(content_terms(passage.title))
            dense = passage.dense_score or 0.0
            heading_terms: set[str] = set()
            for i, unit in enumerate(units):
                context = title_terms | heading_terms
                for prev in units[max(0, i - 2) : i]:
                    context |= prev.terms
                if unit.heading:
                    heading_terms = unit.terms
                if _not_an_answer(unit):
                    continue
                own = sum(w for t, w in q_idf.items() if _has(unit.terms, t))
                near = sum(w for t, w in q_idf.items() if not _has(unit.terms, t) and _has(context, t))
                coverage = (own + 0.5 * near) / q_total
                score = 0.65 * coverage + 0.35 * dense - 0.01 * rank
                if c_terms:
                    conv = sum(w for t, w in c_idf.items() if _has(unit.terms | context, t)) / c_total
                    score += 0.25 * conv
                if expects and all(shape.search(unit.span.text) for shape in expects):
                    score += 0.08
                next_span = units[i + 1].span if i + 1 < len(units) and _echoes(unit, q_terms) else None
                candidates.append(Candidate(passage, unit.span, round(score, 4), round(coverage, 4), next_span))
        candidates.sort(key=lambda c: -c.score)
        return candidates

    def run(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats) -> ExtractiveAnswer:
        candidates = self.score(condensed, passages, stats)
        if not candidates or candidates[0].score < self.abstain_threshold:
            confidence = candidates[0].score if candidates else 0.0
            return ExtractiveAnswer(NO_ANSWER, True, [], confidence, candidates[:10])
        best = candidates[0]
        chosen = [best]
        for cand in candidates[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if cand.score < max(self.abstain_threshold, 0.9 * best.score):
                break
            if any(_overlaps(cand, c) or _same_text(cand, c) for c in chosen):
                continue
            chosen.append(cand)
        citations: list[Citation] = []
        parts: list[str] = []
        for cand in chosen:
            span = cand.span
            if cand.next_span is not None:
                p = cand.passage
                span = Span(span.start, cand.next_span.end, p.text[span.start - p.start : cand.next_span.end - p.start])
            n = len(citations) + 1
            p = cand.passage
            citations.append(Citation(n, p.chunk_id, p.doc_id, p.title, p.source, span.start, span.end, span.text))
            parts.append(f"{_clean(span.text)} [{n}]")
        return ExtractiveAnswer(" ".join(parts), False, citations, best.score, candidates[:10])


def _units(passage: Passage) -> list[_Unit]:
    """Sentences, with a lead-in line ending in ':' joined to the sentence after it."""
    sentences = split_sentences(passage.text, passage.start)
    units: list[_Unit] = []
    i = 0
    while i < len(sentences):
        span = sentences[i]
        if span.text.rstrip().endswith(":") and i + 1 < len(sentences):
            nxt = sentences[i + 1]
            span = Span(span.start, nxt.end, passage.text[span.start - passage.start : nxt.end - passage.start])
            i += 1
        text = span.text.strip()
        heading = len(text.split()) <= 12 and not re.search(r"[.!:;,\u2026\"\u201d]$", text)
        units.append(_Unit(span, set(content_terms(text)), heading))
        i += 1
    return units


def _has(terms: set[str], term: str) -> bool:
    """Exact term, or a name variant differing by a letter or two (Zelensky / Zelenskyy)."""
    if term in terms:
        return True
    if len(term) < 5:
        return False
    return any(len(t) >= 5 and abs(len(t) - len(term)) <= 2 and (t.startswith(term) or term.startswith(t))
               for t in terms)


def _echoes(unit: _Unit, q_terms: list[str]) -> bool:
    """A short unit that adds little beyond the question's own words needs the next sentence."""
    novel = [t for t in unit.terms if not _has(set(q_terms), t)]
    return len(novel) <= 2 or len(unit.span.text.split()) < 6


def _not_an_answer(unit: _Unit) -> bool:
    """Questions and fragments of a word or two do not answer anything."""
    return unit.span.text.strip().endswith("?") or len(unit.terms) < 2


def _overlaps(a: Candidate, b: Candidate) -> bool:
    return a.passage.doc_id == b.passage.doc_id and a.span.start < b.span.end and b.span.start < a.span.end


def _same_text(a: Candidate, b: Candidate) -> bool:
    ta, tb = set(content_terms(a.span.text)), set(content_terms(b.span.text))
    return bool(ta) and len(ta & tb) / len(ta | tb) > 0.7


def _clean(text: str) -> str:
    return " ".join(text.replace("\n", " ").split()).lstrip("-*\u2022 ").strip()
