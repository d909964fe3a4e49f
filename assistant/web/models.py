"""Request and response bodies of the /api routes, as pydantic models: FastAPI validates with
them and /docs shows each one. The answer shapes are those of `AskResult.to_dict()` and
`RetrievalResult.to_dict()` (the same as `assistant ask --json`, `search --json`); citations,
passages and document records are the dataclasses of `assistant.types` themselves."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.service import MAX_HISTORY_ITEMS, MAX_OFFSET, MAX_QUESTION_CHARS, MAX_TOP_K
from assistant.types import Citation, DocumentRecord, Passage
from assistant.web.preview import PREVIEW_CONTEXT

MAX_PASSAGE_CHARS = 20_000
History = list[Annotated[str, Field(max_length=MAX_QUESTION_CHARS)]]

# -- requests ---------------------------------------------------------------------------------


class AskBody(BaseModel):
    question: str = Field(..., max_length=MAX_QUESTION_CHARS, description="the question")
    history: History = Field(default_factory=list, max_length=MAX_HISTORY_ITEMS,
                             description="earlier questions of the conversation, oldest first")
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="passages to retrieve (default from settings)")
    backend: str | None = Field(None, description="answer backend (GET /api/info lists them; default: the first)")


class FeedbackBody(BaseModel):
    rating: Literal[1, -1] = Field(..., description="1 thumbs up, -1 thumbs down")
    question: str = Field(..., max_length=MAX_QUESTION_CHARS)
    answer: str = Field("", max_length=100_000)
    comment: str = Field("", max_length=4000)
    history: History = Field(default_factory=list, max_length=MAX_HISTORY_ITEMS)
    citations: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    abstained: bool = False


class PreviewBody(BaseModel):
    doc_id: str = Field(..., max_length=100)
    start: int = Field(..., ge=0, le=MAX_OFFSET, description="the citation's span in its document's text")
    end: int = Field(..., ge=1, le=MAX_OFFSET)
    quote: str = Field("", max_length=MAX_PASSAGE_CHARS, description="the citation's quote: the span must hold it")


# -- responses --------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(..., description="what went wrong and what to do about it")
    detail: list[dict[str, Any]] | None = Field(None, description="per-field problems (422 only)")


class SupportScore(BaseModel):
    """How one cited passage scored as support for a generated sentence (`assistant.types.Support`)."""

    n: int
    score: float
    lexical: float
    embedding: float
    numbers_ok: bool
    passed: bool


class UnsupportedSentenceBody(BaseModel):
    """`assistant.types.UnsupportedSentence`: `start`/`end` only when it is kept in the answer, marked."""

    sentence: str
    cited: list[int]
    score: float
    reason: str
    supports: list[SupportScore]
    start: int | None = Field(None, description="where the marked sentence is in `answer` (absent: removed)")
    end: int | None = None


class DroppedCitationBody(BaseModel):
    """`assistant.types.DroppedCitation`: an [n] the user does not see."""

    n: int
    sentence: str
    reason: str
    score: float | None = Field(None, description="the support score, when the source exists")


class AskResponse(BaseModel):
    question: str
    standalone_question: str = Field(..., description="the question as retrieved for (follow-ups resolved)")
    answer: str = Field(..., description="the answer with [n] citation marks")
    abstained: bool
    confidence: float
    citations: list[Citation]
    passages: list[Passage]
    timings: dict[str, float]
    backend: str = Field(..., description="who produced the answer: extractive, or an LLM backend")
    model: str
    fallback_reason: str | None
    warnings: list[str]
    unsupported: list[UnsupportedSentenceBody] = Field(..., description="generated sentences the verifier rejected")
    dropped_citations: list[DroppedCitationBody] = Field(..., description="[n] the user does not see")
    revised: bool = Field(..., description="the streamed draft differs from `answer`: replace it")
    debug: dict[str, Any]


class InfoResponse(BaseModel):
    answer_modes: list[str]
    max_upload_mb: float
    accepted_types: list[str]
    top_k: int


class SearchResponse(BaseModel):
    query: str
    passages: list[Passage]
    timings: dict[str, float]


class IndexStats(BaseModel):
    """What the store reports (the route leaves out what a store does not report)."""

    model_config = ConfigDict(extra="allow")  # a store may report more
    documents: int = Field(..., description="documents in the index")
    chunks: int = Field(..., description="chunks in the index")
    ready: bool = Field(..., description="the model and index are loaded")
    vectors: int | None = Field(None, description="vectors in the dense index")
    model: str | None = Field(None, description="the embedding model the index was built with")
    dim: int | None = Field(None, description="its vector dimension")
    generation: int | None = Field(None, description="the committed index generation")
    store: str | None = Field(None, description="the index folder, or the database URL without its password")


class DocumentsResponse(BaseModel):
    documents: list[DocumentRecord]
    stats: IndexStats


class UploadedFile(BaseModel):
    source: str
    status: str = Field(..., description="added, updated, unchanged, skipped or failed")
    reason: str
    chunks: int
    doc_id: str
    filename: str


class UploadResponse(BaseModel):
    results: list[UploadedFile]
    embedded_chunks: int
    seconds: float


class UploadRefused(UploadResponse):
    error: str


class RemovedResponse(BaseModel):
    removed: str


class FeedbackSaved(BaseModel):
    id: int


class PassageText(BaseModel):
    doc_id: str
    start: int
    end: int
    text: str


class PreviewResponse(BaseModel):
    doc_id: str
    start: int
    end: int
    before: str = Field(..., description=f"up to {PREVIEW_CONTEXT} characters of the document before the quote")
    quote: str
    after: str
    found: bool = Field(..., description="false: the span no longer holds the quote; `quote` alone is shown")


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    documents: int | None = None
    chunks: int | None = None
    model: str | None = None
    error: str | None = None


class StreamEventDoc(BaseModel):
    """One server-sent event of /api/ask/stream (documentation only: the wire format is SSE)."""

    event: Literal["token", "status", "warning", "final", "error"]
    data: str = Field(..., description="JSON: {text} for token/status/warning, the /api/ask body for final, "
                                       "{error} for error")
