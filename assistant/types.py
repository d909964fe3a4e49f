"""The shared types of file -> chunk -> vector -> passage -> cited answer, in one place.

This module imports nothing from the assistant, so any module can use these types without an
import cycle. The JSON the HTTP API returns is the contract; the CLI's `--json` output and the
API serialize through the same methods:

`AskResult.to_dict()` (`POST /api/ask`, the `final` event of `/api/ask/stream`, `ask --json`)::

    {"question": str, "standalone_question": str, "answer": str, "abstained": bool,
     "confidence": float, "citations": [Citation], "passages": [Passage],
     "timings": {str: float}, "backend": str, "model": str, "fallback_reason": str | null,
     "warnings": [str], "unsupported": [UnsupportedSentence], "dropped_citations": [DroppedCitation],
     "revised": bool, "debug": {str: ...}}

    Citation:            {"n", "chunk_id", "doc_id", "title", "source", "start", "end", "quote"}
    Passage:             {"chunk_id", "doc_id", "title", "source", "start", "end", "text", "score",
                          "dense_score", "bm25_score", "dense_rank", "bm25_rank"}
    UnsupportedSentence: {"sentence", "cited": [int], "score", "reason", "supports": [Support],
                          "start", "end"}  (start/end only when the sentence is kept, marked, in `answer`)
    DroppedCitation:     {"n", "sentence", "reason", "score"}  (score only for "does not support")
    Support:             {"n", "score", "lexical", "embedding", "numbers_ok", "passed"}

`RetrievalResult.to_dict()` (`GET /api/search`, `search --json`)::

    {"query": str, "passages": [Passage], "timings": {str: float}}

Character offsets (`start`/`end`) of citations and passages index the document's text, so
`text[start:end]` is the quote; offsets of unsupported sentences index `answer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePath
from typing import Any, Literal

import numpy as np

# -- text and retrieval ---------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A piece of a larger text, with its character offsets in that text."""

    start: int
    end: int
    text: str


@dataclass
class Passage:
    """A retrieved chunk with its scores; `start`/`end` are offsets in the document's text."""

    chunk_id: int
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    text: str
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class RetrievalResult:
    query: str
    passages: list[Passage]
    timings: dict[str, float] = field(default_factory=dict)
    query_vector: np.ndarray | None = None  # the encoded query, reused by the answerer (not serialized)

    def to_dict(self) -> dict[str, object]:
        return {"query": self.query, "passages": [p.to_dict() for p in self.passages], "timings": self.timings}


# -- answers --------------------------------------------------------------------------------


@dataclass
class Citation:
    """`[n]` in an answer: the exact span of a document that vouches for it."""

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
    """One answer unit an extractive answerer considered, with its score."""

    passage: Passage
    span: Span
    score: float  # the scorer's log-odds that this unit holds the answer


class _ReadsAsJson(Mapping[str, object]):
    """A record that also reads as its JSON object (`entry["sentence"]`, `"start" in entry`,
    equality with a dict): the UI and the tests read the verifier's report in the API's shape."""

    def to_dict(self) -> dict[str, object]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> object:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass
class Support:
    """How well one cited source supports one generated sentence."""

    n: int
    score: float
    lexical: float
    embedding: float
    numbers_ok: bool
    span: Span  # the best-supporting text of the source, with document offsets
    passed: bool = False  # numbers found and score >= the verifier's threshold

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "score": round(self.score, 4), "lexical": round(self.lexical, 4),
                "embedding": round(self.embedding, 4), "numbers_ok": self.numbers_ok, "passed": self.passed}


@dataclass(eq=False)
class UnsupportedSentence(_ReadsAsJson):
    """A generated sentence the verifier rejected. `start`/`end` locate it in the answer when it is
    kept there with an "[unverified]" mark; None when it was removed or its draft is not shown."""

    sentence: str
    cited: list[int]
    score: float
    reason: str
    supports: list[Support] = field(default_factory=list)
    start: int | None = None
    end: int | None = None

    @property
    def marked(self) -> bool:
        """Kept in the answer with a visible mark (policy "mark"), rather than left out."""
        return self.start is not None and self.end is not None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"sentence": self.sentence, "cited": self.cited, "score": self.score,
                                  "reason": self.reason, "supports": [s.to_dict() for s in self.supports]}
        if self.marked:
            out.update(start=self.start, end=self.end)
        return out


@dataclass(eq=False)
class DroppedCitation(_ReadsAsJson):
    """An `[n]` the user does not see: it named no source, or a source that does not support it."""

    n: int
    sentence: str
    reason: str
    score: float | None = None  # the support score, when the source exists

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"n": self.n, "sentence": self.sentence, "reason": self.reason}
        if self.score is not None:
            out["score"] = self.score
        return out


@dataclass(kw_only=True)
class Provenance:
    """Who produced an answer ("extractive", "openai", "local"), why not the one asked for, and
    what the citation verifier did. Shared by `Answer` and `AskResult`, so none of it is copied."""

    backend: str = "extractive"
    model: str = ""  # the LLM that was asked, if any
    fallback_reason: str | None = None
    warnings: list[str] = field(default_factory=list)  # LLM failures and the like, for the user
    unsupported: list[UnsupportedSentence] = field(default_factory=list)
    dropped_citations: list[DroppedCitation] = field(default_factory=list)
    revised: bool = False  # the final text differs from the streamed draft: show it instead
    timings: dict[str, float] = field(default_factory=dict)
    debug: dict[str, object] = field(default_factory=dict)  # draft, context packing, per-sentence support

    def provenance(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(Provenance)}


@dataclass
class Answer(Provenance):
    """What one answer step produced: an extractive answerer, the "about" overview, or an LLM
    whose draft was verified (or that fell back). `text` carries the `[n]` markers."""

    text: str
    abstained: bool
    citations: list[Citation]
    confidence: float  # calibrated P(the answer is right); compare with the abstain threshold
    candidates: list[Candidate] = field(default_factory=list)  # extractive: the ranked units (not serialized)


@dataclass
class AskResult(Provenance):
    """One question answered: the question as asked and as read, the answer, its passages."""

    question: str
    standalone_question: str
    answer: str
    abstained: bool
    confidence: float
    citations: list[Citation]
    passages: list[Passage]

    @classmethod
    def of(cls, question: str, standalone_question: str, answer: Answer, passages: list[Passage], *,
           timings: dict[str, float], warnings: list[str], fallback_reason: str | None) -> AskResult:
        """The result for `answer`, with the whole ask's timings, warnings and fallback reason."""
        result = cls(question, standalone_question, answer.text, answer.abstained, answer.confidence,
                     answer.citations, passages, **answer.provenance())
        result.timings, result.warnings, result.fallback_reason = timings, warnings, fallback_reason
        return result

    def verified_answer(self) -> str:
        """The answer without sentences marked unsupported (what the citations vouch for)."""
        text = self.answer
        for u in sorted(self.unsupported, key=lambda u: -(u.start if u.start is not None else -1)):
            if u.start is not None and u.end is not None:
                text = text[: u.start] + text[u.end :].replace(" [unverified]", "", 1)
        return " ".join(text.split())

    def to_dict(self) -> dict[str, object]:
        """The stable machine-readable shape (the API, `ask --json`): see the module docstring."""
        out: dict[str, object] = {key: getattr(self, key) for key in ASK_RESULT_KEYS}
        out.update(citations=[c.to_dict() for c in self.citations], passages=[p.to_dict() for p in self.passages],
                   unsupported=[u.to_dict() for u in self.unsupported],
                   dropped_citations=[d.to_dict() for d in self.dropped_citations])
        return out


# The keys of AskResult.to_dict(), in order (the API's contract).
ASK_RESULT_KEYS = ("question", "standalone_question", "answer", "abstained", "confidence", "citations", "passages",
                   "timings", "backend", "model", "fallback_reason", "warnings", "unsupported", "dropped_citations",
                   "revised", "debug")

EventKind = Literal["token", "status", "warning", "final"]


@dataclass
class StreamEvent:
    """One event of a streamed answer: text pieces first, then one `final` with the full result.

    Kinds: "token" (a piece of the answer text), "status" (what is happening, e.g. "checking
    citations"), "warning" (an LLM failure; the answer falls back), "final" (the AskResult; when
    `result.revised` the streamed draft must be replaced by `result.answer`). Consumers ignore
    kinds they do not know.
    """

    kind: EventKind
    text: str = ""
    result: AskResult | None = None


# -- store records and errors ---------------------------------------------------------------


class StoreError(Exception):
    """The index cannot be used as asked; the message says why and what to do."""


class ModelMismatchError(StoreError):
    """The index was built with another embedding model (or dimension) than the one asked for."""


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    source: str
    title: str
    content_hash: str
    size: int
    n_chunks: int
    updated_at: float


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    doc_id: str
    ord: int
    start: int  # character offsets of the chunk in its document's text
    end: int
    n_tokens: int
    text: str
    title: str
    source: str


def file_name(source: object) -> str:
    """The last component of a source path (never the server's folder layout)."""
    text = str(source or "")
    return PurePath(text.replace("\\", "/")).name or text
