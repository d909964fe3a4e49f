"""Check every generated sentence against the passages it cites, before the user sees it.

A generated answer is split into sentences and its `[n]` markers parsed. Markers that name no
source are dropped. A sentence is supported by a cited source when
- every number in the sentence appears in the source (numbers are where models slip), and
- its support score reaches `threshold`: the mean of a lexical score (share of the sentence's
  content terms found in the source) and an embedding score (cosine of the sentence to the
  closest source sentence or pair of adjacent sentences).
A sentence without any valid citation is unsupported. The threshold is calibrated on the golden
set (`assistant eval --calibrate-verifier`): extractive quotes and golden evidence as positives,
the same texts paired with retrieved passages that do not hold them as negatives.

`assemble()` turns the checked sentences into the answer the user sees: citations renumbered
1..k, each pointing at the exact span (the best-supporting source sentence) in the document;
unsupported sentences removed or kept with a visible "[unverified]" mark, per policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from assistant.embed import Embedder
from assistant.prompting import PackedPassage
from assistant.text import content_terms, normalize, split_sentences
from assistant.types import Citation, DroppedCitation, Span, Support, UnsupportedSentence

LEXICAL_WEIGHT = 0.5
UNVERIFIED = "[unverified]"
_MARKER = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*[,;]\s*(?:sources?\s*)?\d+)*)\s*\]", re.IGNORECASE)
_MARKERS_AFTER_END = re.compile(r"([.!?\u2026][\"'\u201d\u2019)]*)[ \t]*((?:\[\s*(?:sources?\s*)?\d+(?:\s*[,;]\s*(?:sources?\s*)?\d+)*\s*\][ \t]*)+)",
                                re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# "According to source [2], the pier ..." cites [2] for "the pier ...": the lead-in is not a claim.
_LEAD_IN = re.compile(r"^\W*(?:(?:according to|as (?:stated|said|reported) in|per|in)\s+(?:the\s+)?sources?\s*"
                      r"(?:\[[^\]]*\]\s*)+,?|(?:the\s+)?sources?\s*(?:\[[^\]]*\]\s*)+"
                      r"(?:says|said|states|stated|reports|reported)\s+(?:that\s+)?)\s*", re.IGNORECASE)


@dataclass
class Claim:
    """One generated sentence (markers removed) and the source numbers it cited."""

    text: str
    cited: list[int]
    dropped: list[int] = field(default_factory=list)  # cited numbers that name no source
    supports: list[Support] = field(default_factory=list)  # per valid cited source
    supported: bool = False
    reason: str = ""

    @property
    def score(self) -> float:
        return max((s.score for s in self.supports), default=0.0)

    def rejected(self, reason: str | None = None) -> UnsupportedSentence:
        """This sentence as reported unsupported (with the verifier's reason, or another one)."""
        return UnsupportedSentence(self.text, self.cited, round(self.score, 4), reason or self.reason, self.supports)


@dataclass
class Verification:
    claims: list[Claim]
    abstained: bool = False  # the model said the sources do not answer

    @property
    def supported(self) -> list[Claim]:
        return [c for c in self.claims if c.supported]

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if not c.supported]


def split_claims(draft: str) -> list[Claim]:
    """Sentences of a generated answer with their `[n]` / `[n, m]` markers parsed out."""
    text = _MARKERS_AFTER_END.sub(lambda m: " " + m.group(2).strip() + m.group(1) + " ", draft.strip())
    claims: list[Claim] = []
    for span in split_sentences(text):
        cited = [int(n) for group in _MARKER.findall(span.text) for n in re.findall(r"\d+", group)]
        core = _clean(_MARKER.sub(" ", _LEAD_IN.sub("", span.text)))
        if not re.search(r"\w", core):
            if claims and cited:  # a marker on its own line: it belongs to the sentence before
                claims[-1].cited.extend(n for n in cited if n not in claims[-1].cited)
            continue
        claims.append(Claim(core, list(dict.fromkeys(cited))))
    return claims


def _clean(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+([.,;:!?\u2026])", r"\1", text)
    text = text.lstrip("-*\u2022,;: ").strip()
    return text[:1].upper() + text[1:]


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def has_term(terms: set[str], term: str) -> bool:
    """Exact stem, or a close spelling variant of a long name (Tchaikovsky / Tchaikovskyy)."""
    if term in terms:
        return True
    return len(term) >= 5 and any(len(t) >= 5 and abs(len(t) - len(term)) <= 2 and
                                  (t.startswith(term) or term.startswith(t)) for t in terms)


def lexical_support(sentence_terms: Sequence[str], source_terms: set[str]) -> float:
    terms = list(dict.fromkeys(sentence_terms))
    if not terms:
        return 0.0
    return sum(1 for t in terms if has_term(source_terms, t)) / len(terms)


class Verifier:
    """Scores sentences against cited sources with lexical overlap and sentence embeddings."""

    def __init__(self, embedder: Embedder, threshold: float = 0.77, lexical_weight: float = LEXICAL_WEIGHT) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.lexical_weight = lexical_weight

    def verify(self, draft: str, sources: list[PackedPassage], no_answer: str = "") -> Verification:
        if no_answer and _is_no_answer(draft, no_answer):
            return Verification([], abstained=True)
        claims = split_claims(draft)
        by_n = {s.n: s for s in sources}
        for claim in claims:
            claim.dropped = [n for n in claim.cited if n not in by_n]
            valid = [n for n in claim.cited if n in by_n]
            if not valid:
                claim.reason = "cites no existing source" if claim.dropped else "no citation"
                continue
            claim.supports = [self.support(claim.text, by_n[n].text, by_n[n].start, n) for n in valid]
            for support in claim.supports:
                support.passed = support.numbers_ok and support.score >= self.threshold
            good = [s for s in claim.supports if s.passed]
            claim.supported = bool(good)
            if not good:
                best = max(claim.supports, key=lambda s: s.score)
                if not best.numbers_ok:
                    claim.reason = f"a number is not in cited source [{best.n}]"
                else:
                    claim.reason = f"support {best.score:.2f} < {self.threshold:.2f} in cited source [{best.n}]"
        return Verification(claims)

    def support(self, sentence: str, source_text: str, source_start: int = 0, n: int = 0) -> Support:
        """Support of `sentence` by one source text (document offset `source_start`)."""
        terms = content_terms(sentence)
        lexical = lexical_support(terms, set(content_terms(source_text)))
        numbers_ok = _numbers(sentence) <= _numbers(source_text)
        candidates = _candidates(source_text, source_start)
        if not candidates:
            return Support(n, self.lexical_weight * lexical, lexical, 0.0, numbers_ok, Span(source_start, source_start, ""))
        vectors = self._encode([sentence] + [c.text for c in candidates])
        cosines = vectors[1:] @ vectors[0]
        local = [lexical_support(terms, set(content_terms(c.text))) for c in candidates]
        pick = max(range(len(candidates)), key=lambda i: 0.5 * local[i] + 0.5 * float(cosines[i]))
        embedding = max(0.0, float(cosines.max()))
        score = self.lexical_weight * lexical + (1 - self.lexical_weight) * embedding
        return Support(n, score, lexical, embedding, numbers_ok, candidates[pick])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)


def _candidates(text: str, offset: int) -> list[Span]:
    """Source sentences and pairs of adjacent sentences (a claim may merge two), document offsets."""
    sentences = split_sentences(text, offset)
    spans = list(sentences)
    for a, b in zip(sentences, sentences[1:], strict=False):
        spans.append(Span(a.start, b.end, text[a.start - offset : b.end - offset]))
    return spans


def _is_no_answer(draft: str, no_answer: str) -> bool:
    """The model used the prompt's no-answer sentence (alone, or as its first sentence)."""
    said = normalize(_MARKER.sub(" ", draft))
    phrase = normalize(no_answer).rstrip(".")
    return bool(phrase) and said.startswith(phrase[: max(20, len(phrase) // 2)])


@dataclass
class Assembled:
    text: str
    citations: list[Citation]
    unsupported: list[UnsupportedSentence]
    dropped_citations: list[DroppedCitation]


def assemble(verification: Verification, sources: list[PackedPassage], policy: str = "mark") -> Assembled:
    """The answer the user sees: supported sentences with renumbered citations to exact spans;
    unsupported ones removed (`remove`) or kept with an "[unverified]" mark (`mark`)."""
    if policy not in ("mark", "remove"):
        raise ValueError(f"unsupported_policy must be 'mark' or 'remove', not {policy!r}")
    by_n = {s.n: s for s in sources}
    citations: list[Citation] = []
    numbers: dict[tuple[int, int, int], int] = {}
    parts: list[str] = []
    unsupported: list[UnsupportedSentence] = []
    dropped: list[DroppedCitation] = []
    length = 0

    def add(piece: str) -> tuple[int, int]:
        nonlocal length
        if parts:
            length += 1
        start = length
        parts.append(piece)
        length += len(piece)
        return start, start + len(piece)

    seen: set[str] = set()
    for claim in verification.claims:
        said = normalize(claim.text)
        if said in seen:
            continue  # a model stuck in a loop repeats itself; say it once
        seen.add(said)
        for n in claim.dropped:
            dropped.append(DroppedCitation(n, claim.text, "no such source"))
        if not claim.supported:
            entry = claim.rejected()
            if policy == "mark":
                start, _ = add(f"{claim.text} {UNVERIFIED}")
                entry.start, entry.end = start, start + len(claim.text)
            unsupported.append(entry)
            continue
        markers = []
        for support in claim.supports:
            if not support.passed:
                dropped.append(DroppedCitation(support.n, claim.text, "does not support the sentence",
                                               round(support.score, 4)))
                continue
            source = by_n[support.n]
            p = source.passage
            key = (p.chunk_id, support.span.start, support.span.end)
            if key not in numbers:
                numbers[key] = len(citations) + 1
                citations.append(Citation(numbers[key], p.chunk_id, p.doc_id, p.title, p.source,
                                          support.span.start, support.span.end, support.span.text))
            markers.append(f"[{numbers[key]}]")
        add(f"{claim.text} {''.join(dict.fromkeys(markers))}")
    return Assembled(" ".join(parts), citations, unsupported, dropped)


# -- calibration ----------------------------------------------------------------------------


@dataclass
class Pair:
    text: str
    source_text: str
    positive: bool
    score: float = 0.0
    numbers_ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threshold(pairs: list[Pair]) -> dict[str, Any]:
    """The cut with the fewest errors, false supports counting double (a wrong citation shown to
    a user is worse than a good sentence held back); ties go to the middle of the widest gap."""
    pos = sorted(p.score for p in pairs if p.positive and p.numbers_ok)
    neg = sorted(p.score for p in pairs if not p.positive and p.numbers_ok)
    values = sorted(set(pos) | set(neg))
    cuts = [0.0] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + [1.0]
    best: tuple[float, float, float] | None = None
    rows = []
    for cut in cuts:
        fn = sum(1 for s in pos if s < cut)
        fp = sum(1 for s in neg if s >= cut)
        cost = fn / max(len(pos), 1) + 2 * fp / max(len(neg), 1)
        below = max((s for s in values if s < cut), default=0.0)
        above = min((s for s in values if s >= cut), default=1.0)
        rows.append({"threshold": round(cut, 4), "false_negatives": fn, "false_positives": fp, "cost": round(cost, 4)})
        key = (cost, -(above - below), cut)
        if best is None or key < best:
            best = key
    assert best is not None
    chosen = best[2]
    return {"threshold": round(chosen, 3), "positives": len(pos), "negatives": len(neg),
            "false_negatives": sum(1 for s in pos if s < chosen), "false_positives": sum(1 for s in neg if s >= chosen),
            "rows": rows}
