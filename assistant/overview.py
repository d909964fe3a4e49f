"""Questions about what a document, or the whole collection, is about: answered with leads.

"What is X about?" / "Summarize X" is not answered well by scoring sentences against the
question's words (the best match is any sentence that happens to name X). A document's own
opening says what it is about, so:

- `about_target(question)` recognises such a question and what it names (`AboutQuestion`;
  an empty target means the whole collection). The recognition is English (the one
  language-specific block below); other questions give None and the normal answerer runs.
- `answer_about(about, store, passages)` picks the document: by its title or file name
  (normalized words, e.g. "the README" matches README.md), else the document of the top
  retrieved passage when all of the target's content words occur in that passage (not for
  the "what does X cover" wording, which as often asks a factual question). It answers with
  the document's lead: its first non-heading unit (`assistant.units`), and the next one when
  the first is short (under LEAD_WORDS words). For the collection: the first unit of each
  document, up to MAX_DOCUMENTS documents in the store's order. Every unit is cited with its
  exact span; the answer text is each unit's `shown()` text followed by ` [n]`. None when no
  document matches or nothing has a lead (the normal answerer then runs).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.text import content_terms, normalize
from assistant.types import Answer, ChunkRecord, Citation, Passage, file_name
from assistant.units import Unit, split_units

if TYPE_CHECKING:
    from assistant.index import Store

MAX_DOCUMENTS = 5  # documents quoted for a question about the whole collection
LEAD_WORDS = 30  # a first unit shorter than this is followed by the document's next unit
LEAD_CHARS = 4000  # how far into a document to look for its lead when the first chunk has none

# ---- English question patterns (the only language-specific part of the module) -------------
_EN_LEAD = r"^(?:(?:so|and|ok|okay|well|hey|hi)\b[,\s]*)*(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?"
_EN_WHAT_IS = r"what(?:'s|\s+is|\s+are)"
_EN_END = r"\s*(?:,?\s*please)?\s*[?.!]*\s*$"
# (pattern, strict): strict = only a title or file-name match answers it, never retrieval
_EN_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = (
    # What is X about? / What's "X" about? / What are these documents about? / What is it all about?
    (re.compile(_EN_LEAD + _EN_WHAT_IS + r"\s+(?P<x>.*?)\s*(?:really\s+|all\s+|mainly\s+|mostly\s+)?about" + _EN_END,
                re.I), False),
    # What was X about? (past tense asks about an event as often as about a document)
    (re.compile(_EN_LEAD + r"what\s+(?:was|were)\s+(?P<x>.*?)\s*(?:really\s+|all\s+|mainly\s+)?about" + _EN_END, re.I),
     True),
    # Summarize X / Can you summarise X? / Please sum up the documents / Summarize
    (re.compile(_EN_LEAD + r"(?:summari[sz]e|sum\s+up)(?:\s+(?P<x>.*?))?" + _EN_END, re.I), False),
    # Give me a (short) summary of X / An overview of X / Give an overview
    (re.compile(_EN_LEAD + r"(?:(?:give|write|provide|show)\s+(?:me\s+|us\s+)?)?(?:a\s+|an\s+)?(?:short\s+|brief\s+|"
                r"quick\s+|general\s+)?(?:summary|overview|synopsis|gist)\s+of\s+(?P<x>.+?)" + _EN_END, re.I), False),
    (re.compile(_EN_LEAD + r"(?:give|write|provide|show)\s+(?:me\s+|us\s+)?(?:a\s+|an\s+)(?:short\s+|brief\s+|"
                r"quick\s+|general\s+)?(?:summary|overview|synopsis)" + _EN_END, re.I), False),
    # What is the (main) topic / subject / gist of X?
    (re.compile(_EN_LEAD + _EN_WHAT_IS + r"\s+the\s+(?:main\s+|general\s+)?(?:topics?|subjects?|gist|themes?|"
                r"point)\s+of\s+(?P<x>.+?)" + _EN_END, re.I), False),
    # What do the documents cover? / What topics does X discuss? / What does X contain?
    (re.compile(_EN_LEAD + r"what\s+(?:topics\s+|subjects\s+|things\s+)?(?:do|does)\s+(?P<x>.+?)\s+(?:cover|discuss|"
                r"contain|describe|deal\s+with|talk\s+about|explain|include)" + _EN_END, re.I), True),
    # What is in these documents? / What's in the collection?
    (re.compile(_EN_LEAD + r"what(?:'s|\s+is)\s+in\s+(?P<x>.+?)" + _EN_END, re.I), True),
)
# Words that, alone, name the whole collection ("these documents", "it", "the indexed files").
_EN_COLLECTION = frozenset(
    "this these those that it the all of your my our we you i here there indexed uploaded available loaded whole "
    "entire every everything stuff document documents doc docs file files collection collections corpus text texts "
    "source sources index library material materials page pages article articles data set sets knowledge base "
    "content contents you've we've have has got been".split())
# Nouns that call the target a document ("the report X"); not words the document itself contains.
_EN_DOC_NOUNS = frozenset("document doc file page article report paper text post note notes guide".split())
_EN_ARTICLES = frozenset("the a an".split())
# ---- end of the English block -------------------------------------------------------------

_QUOTED = re.compile(r"[\"\u201c\u201d\u201e\u00ab\u00bb]\s*(.+?)\s*[\"\u201c\u201d\u201e\u00ab\u00bb]|"
                     r"(?:^|(?<=\s))[\u2018'](.+?)[\u2019'](?=\s|$)")
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class AboutQuestion:
    target: str  # what the question names; "" = the whole collection
    strict: bool = False  # only a title or file-name match answers it (not the retrieved passages)

    @property
    def collection(self) -> bool:
        return not self.target


def about_target(question: str) -> AboutQuestion | None:
    """What a "what is X about?" question asks about, or None for any other question."""
    text = " ".join(question.replace("\u2019", "'").split())
    for pattern, strict in _EN_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        target = (match.groupdict().get("x") or "").strip(" ,:;")
        quoted = _QUOTED.search(target)
        if quoted is not None:
            return AboutQuestion((quoted.group(1) or quoted.group(2)).strip(), strict)
        if all(w in _EN_COLLECTION for w in _words(target)):
            return AboutQuestion("", strict)
        return AboutQuestion(target, strict)
    return None


def answer_about(about: AboutQuestion | None, store: Store, passages: list[Passage]) -> Answer | None:
    """The lead of the document (or of each document) the question asks about; None to let the
    normal answerer run."""
    if about is None:
        return None
    picked: list[tuple[ChunkRecord, Unit]] = []
    confidence = 1.0
    if about.collection:
        for doc in store.documents()[:MAX_DOCUMENTS * 2]:
            picked.extend(_lead(store, doc.id, 1))
            if len({chunk.doc_id for chunk, _ in picked}) >= MAX_DOCUMENTS:
                break
    else:
        doc_id = _by_title(about.target, store, passages)
        if doc_id is None and not about.strict and passages and _names(about.target, passages[0]):
            doc_id, confidence = passages[0].doc_id, passages[0].score
        if doc_id is None:
            return None
        picked = _lead(store, doc_id, 2)
    if not picked:
        return None
    citations: list[Citation] = []
    parts: list[str] = []
    for n, (chunk, unit) in enumerate(picked, 1):
        citations.append(Citation(n, chunk.id, chunk.doc_id, chunk.title, chunk.source, unit.start, unit.end, unit.text))
        parts.append(f"{unit.shown()} [{n}]")
    return Answer(" ".join(parts), False, citations, round(confidence, 4))


def _words(text: str) -> list[str]:
    return _WORDS.findall(normalize(text))


def _key(text: str) -> tuple[str, ...]:
    """Words of a title or target, without leading articles ("The Harbour" = "harbour")."""
    words = _words(text)
    while words and words[0] in _EN_ARTICLES:
        words = words[1:]
    return tuple(words)


def _by_title(target: str, store: Store, passages: list[Passage]) -> str | None:
    """The document whose title or file name is the target (normalized), else the one whose title
    holds all of the target's content words (or the reverse) with at least half its words in
    common; ties go to the document retrieved first."""
    want = _key(target)
    bare = tuple(w for w in want if w not in _EN_DOC_NOUNS)  # "the report Harbour notes"
    want_terms = frozenset(content_terms(" ".join(bare)))
    if not want:
        return None
    rank = {p.doc_id: i for i, p in reversed(list(enumerate(passages)))}
    best: tuple[float, int, str] | None = None
    for doc in store.documents():
        name = file_name(doc.source)
        keys = {_key(doc.title), _key(name), _key(os.path.splitext(name)[0])}
        if want in keys or bare in keys:
            score = 2.0
        else:
            terms = frozenset(content_terms(doc.title))
            if not want_terms or not terms or not (want_terms <= terms or terms <= want_terms):
                continue
            score = len(want_terms & terms) / len(want_terms | terms)
            if score < 0.5:
                continue
        candidate = (score, -rank.get(doc.id, len(rank)), doc.id)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def _names(target: str, passage: Passage) -> bool:
    """Do all the target's content words occur in the passage (or its document title)?"""
    wanted = set(content_terms(" ".join(w for w in _key(target) if w not in _EN_DOC_NOUNS)))
    return bool(wanted) and wanted <= set(content_terms(f"{passage.title}\n{passage.text}"))


def _lead(store: Store, doc_id: str, most: int) -> list[tuple[ChunkRecord, Unit]]:
    """The document's first units that can stand as its lead: running text or list items, not a
    heading, a table row or a lead-in ending in ':' (failing those, any non-heading unit); the
    second only when the first is short (`most`=2). The units are split from the document's
    opening (its first chunks put back together), so a code block or table that spans chunks
    reads as one; each unit is cited in a chunk that holds it whole."""
    for window in (2, LEAD_CHARS):
        chunks = store.document_chunks(doc_id, 0, window)
        opening = ""
        for chunk in sorted(chunks, key=lambda c: c.start):
            if chunk.start > len(opening):
                opening += "\n" * (chunk.start - len(opening))  # a dropped repeated line: a break
            if chunk.end > len(opening):
                opening += chunk.text[len(opening) - chunk.start :]
        held = [(chunk, unit) for unit in split_units(opening, 0) if unit.kind != "heading"
                and any(ch.isalpha() for ch in unit.shown())
                for chunk in [next((c for c in chunks if c.start <= unit.start and unit.end <= c.end), None)]
                if chunk is not None]
        good = [(c, u) for c, u in held if u.kind in ("sentence", "list_item") and not u.shown().endswith(":")]
        last = window == LEAD_CHARS
        picked = (good or held if last else good)[:most]
        if picked and len(picked[0][1].shown().split()) >= LEAD_WORDS:
            picked = picked[:1]  # a long first unit is lead enough
            return picked
        if len(picked) >= most or last:
            return picked
    return []
