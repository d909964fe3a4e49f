"""Text helpers shared by chunking, answering and evaluation.

`normalize` is the one normalization for all comparisons (eval, dedupe):
Unicode NFKC, curly quotes to straight, en/em dashes to '-', lower case, whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

import blingfire

from assistant.types import Span

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                         "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2012": "-",
                         "\u2015": "-", "\u2212": "-"})
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return _SPACE.sub(" ", text).strip()


_LINE_END_MARK = re.compile(r"[.!?:;\u2026\"'\u201d]\s*$")  # a line ending so cannot be a soft wrap


def _lines(text: str) -> Iterator[Span]:
    """Logical lines: soft-wrapped lines (next starts lower case, this one has no end mark) join."""
    pos = 0
    start = None
    n = len(text)
    while pos <= n:
        nl = text.find("\n", pos)
        end = n if nl == -1 else nl
        line = text[pos:end]
        if line.strip():
            if start is None:
                start = pos
            nxt = end + 1
            soft_wrap = (
                nl != -1
                and nxt < n
                and text[nxt].islower()
                and not _LINE_END_MARK.search(line)
            )
            if not soft_wrap:
                yield Span(start, end, text[start:end])
                start = None
        elif start is not None:
            yield Span(start, pos - 1, text[start : pos - 1])
            start = None
        if nl == -1:
            break
        pos = nl + 1


# A sentence ends where blingfire (a trained sentence breaker: decades, initials, possessives and
# "Inc." handled better than a rule list; see benchmarks/bench_splitter.py) puts a break inside a
# line, and at every line break that is not a soft wrap. Only blingfire's sentence starts are used:
# each sentence runs to the next start, so no character is lost and offsets stay exact.
# Control characters become spaces first (same length): blingfire's output is a C string.
_CONTROL = {c: " " for c in range(32) if chr(c) != "\n"} | {0x7F: " "}


def _sentence_starts(line: str) -> list[int]:
    """Where blingfire starts a new sentence in `line` (after its first), as character offsets."""
    try:
        _, offsets = blingfire.text_to_sentences_and_offsets(line.translate(_CONTROL))
    except AssertionError:  # its offset mapping gave up on this text: the line stays one sentence
        return []
    return sorted({start for start, _ in offsets[1:] if 0 < start < len(line)})


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Sentences with offsets (plus `offset`) into the text; line breaks end sentences unless soft."""
    sentences: list[Span] = []
    for line in _lines(text):
        body = line.text
        cuts = [0, *_sentence_starts(body), len(body)]
        for start, end in zip(cuts, cuts[1:], strict=False):
            _append(sentences, body, start, end, line.start + offset)
    return sentences


def _append(out: list[Span], body: str, start: int, end: int, base: int) -> None:
    piece = body[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    s = start + lead
    out.append(Span(base + s, base + s + len(stripped), stripped))


_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t don ll ve re d m o y also""".split()
)


# Irregular English forms the stemmer leaves apart ("said" vs "say").
_IRREGULAR = {
    "said": "say", "says": "say", "told": "tell", "thought": "think", "took": "take", "taken": "take",
    "made": "make", "went": "go", "gone": "go", "gave": "give", "given": "give", "wrote": "write",
    "written": "write", "met": "meet", "held": "hold", "won": "win", "lost": "lose", "began": "begin",
    "begun": "begin", "sought": "seek", "brought": "bring", "bought": "buy",
    "caught": "catch", "taught": "teach", "fought": "fight", "found": "find", "left": "leave",
    "felt": "feel", "kept": "keep", "meant": "mean", "sent": "send", "spent": "spend", "built": "build",
    "known": "know", "knew": "know", "grew": "grow", "grown": "grow", "drew": "draw", "drawn": "draw",
    "shown": "show", "chose": "choose", "chosen": "choose", "spoke": "speak", "spoken": "speak",
    "saw": "see", "seen": "see", "ran": "run", "came": "come", "became": "become", "struck": "strike",
    "led": "lead", "paid": "pay", "rose": "rise", "risen": "rise", "fell": "fall", "fallen": "fall",
    "children": "child", "people": "person", "men": "man", "women": "woman",
}
_ALIASES = [
    (re.compile(r"\bU\.S\.(?=\W|$)|\bUS\b|\bUSA\b"), " united states "),
    (re.compile(r"\bU\.K\.(?=\W|$)|\bUK\b"), " united kingdom "),
    (re.compile(r"%"), " percent "),
    (re.compile(r"\bper[\s-]cent\b", re.IGNORECASE), " percent "),
]


def content_terms(text: str) -> list[str]:
    """Stemmed, lower-cased words without stopwords: the unit of lexical matching."""
    for pattern, replacement in _ALIASES:
        text = pattern.sub(replacement, text)
    words = [_IRREGULAR.get(w, w) for w in _WORD.findall(normalize(text))]
    return list(_stemmer().stemWords([w for w in words if w not in STOPWORDS]))
