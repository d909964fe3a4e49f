"""The JSON API under /api. Each route answers through a pydantic response model (validated, and
shown in /docs); the bodies are built by the same `to_dict()` functions as `assistant ask --json`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.sse import EventSourceResponse

from assistant.loaders import supported_suffixes
from assistant.service import MAX_OFFSET, MAX_QUESTION_CHARS, MAX_SEARCH_TOP_K
from assistant.types import file_name
from assistant.web.errors import ApiError, SafeJSONResponse, call_service, error_response
from assistant.web.models import (
    MAX_PASSAGE_CHARS,
    AskBody,
    AskResponse,
    DocumentsResponse,
    ErrorBody,
    FeedbackBody,
    FeedbackSaved,
    InfoResponse,
    PassageText,
    PreviewBody,
    PreviewResponse,
    RemovedResponse,
    SearchResponse,
    StreamEventDoc,
    UploadRefused,
    UploadResponse,
)
from assistant.web.preview import document_preview
from assistant.web.sse import event_stream
from assistant.web.state import ServerState
from assistant.web.uploads import UPLOAD_SCHEMA, read_uploads

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why} for status, why in (
        (400, "the request was refused: the message says why"), (401, "missing or wrong API key"),
        (413, "the request body is too large"), (422, "a field is missing or invalid"),
        (503, "the assistant is still loading, or the index is not available"))}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such document or text"}}
STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {"description": "server-sent events", "content": {
    "text/event-stream": {"schema": StreamEventDoc.model_json_schema()}}}}


def _question(body: AskBody) -> str:
    if not body.question.strip():
        raise ApiError(400, "question is empty: send a non-empty \"question\" string")
    return body.question


def _check_span(start: int, end: int) -> None:
    if end <= start or end - start > MAX_PASSAGE_CHARS:
        raise ApiError(400, f"end must be after start and at most {MAX_PASSAGE_CHARS} characters further")


def api_router(state: ServerState) -> APIRouter:
    service = state.service
    # The bearer dependency documents the scheme in /docs ("Authorize"); ApiGuard checks the key.
    # The explicit response class keeps SafeJSONResponse (lone surrogates) behind the models.
    router = APIRouter(prefix="/api", dependencies=[Depends(HTTPBearer(auto_error=False))],
                       default_response_class=SafeJSONResponse, responses=ERRORS)

    @router.get("/info", tags=["info"], summary="answer backends, upload limit and accepted file types")
    async def info() -> InfoResponse:
        return InfoResponse(answer_modes=await call_service(service.answer_modes),
                            max_upload_mb=service.settings.max_upload_mb, accepted_types=supported_suffixes(),
                            top_k=service.settings.top_k)

    @router.post("/ask", tags=["ask"], response_model=AskResponse, response_model_exclude_unset=True,
                 summary="answer a question with citations (same shape as `assistant ask --json`)")
    async def ask(body: AskBody) -> dict[str, object]:
        result = await call_service(service.ask, _question(body), history=body.history, top_k=body.top_k,
                                    backend=body.backend)
        return result.to_dict()  # type: ignore[no-any-return]

    @router.post("/ask/stream", tags=["ask"], response_class=StreamingResponse, responses=STREAM_DOC,
                 summary="the answer as server-sent events: `token` pieces, `status`/`warning` notes, then `final` (or `error`)")
    async def ask_stream(body: AskBody) -> EventSourceResponse:
        events = await call_service(service.ask_stream, _question(body), history=body.history, top_k=body.top_k,
                                    backend=body.backend)
        # The first event is taken before answering, so a refused question gets a proper status.
        # (Not FastAPI's generator SSE routes: their status line goes out before the first event.)
        first = await call_service(next, events, None)
        return event_stream(events, first)

    @router.get("/search", tags=["search"], response_model=SearchResponse, summary="ranked passages for a query")
    async def search(q: Annotated[str, Query(max_length=MAX_QUESTION_CHARS, description="the query")],
                     top_k: Annotated[int | None, Query(ge=1, le=MAX_SEARCH_TOP_K)] = None,
                     mode: Annotated[str, Query(description="hybrid, dense or bm25")] = "hybrid") -> dict[str, object]:
        if not q.strip():
            raise ApiError(400, "query is empty: pass ?q=<words to search for>")
        result = await call_service(service.search, q, top_k=top_k, mode=mode)
        return result.to_dict()  # type: ignore[no-any-return]

    @router.get("/documents", tags=["documents"], response_model=DocumentsResponse, response_model_exclude_unset=True,
                summary="indexed documents with chunk counts, and index stats")
    async def documents() -> dict[str, object]:
        docs = await call_service(service.documents)
        stats = await call_service(service.stats)
        return {"documents": docs, "stats": stats}

    @router.post("/documents", tags=["documents"], openapi_extra=UPLOAD_SCHEMA, response_model=UploadResponse,
                 responses={422: {"model": UploadRefused, "description": "no file could be indexed"}},
                 summary="upload and index one or more files (multipart field `files`)")
    async def upload(request: Request) -> dict[str, object] | JSONResponse:
        files = await read_uploads(request, state)
        report = await call_service(service.ingest_uploads, files)
        results = [{**r.__dict__, "filename": file_name(r.source)} for r in report.results]
        body: dict[str, object] = {"results": results, "embedded_chunks": report.embedded_chunks,
                                   "seconds": round(report.seconds, 2)}
        if report.failed and len(report.failed) == len(report.results):
            reasons = "; ".join(f"{r['filename']}: {r['reason']}" for r in results)
            return error_response(422, f"nothing was indexed: {reasons}", extra=body)
        return body

    @router.delete("/documents/{doc_id}", tags=["documents"], responses=NOT_FOUND, summary="remove a document by id")
    async def remove(doc_id: str) -> RemovedResponse:
        docs = await call_service(service.documents)
        if not any(d.id == doc_id for d in docs) or not await call_service(service.remove, doc_id):
            raise ApiError(404, f"no document with id {doc_id!r}; GET /api/documents lists them")
        return RemovedResponse(removed=doc_id)

    @router.post("/feedback", tags=["feedback"], summary="thumbs up/down on an answer")
    async def feedback(body: FeedbackBody) -> FeedbackSaved:
        item_id = await call_service(service.feedback.add, body.rating, body.question, body.answer,
                                     citations=body.citations, comment=body.comment, history=body.history,
                                     abstained=body.abstained)
        return FeedbackSaved(id=item_id)

    @router.get("/passage", tags=["documents"], responses=NOT_FOUND, summary="characters [start, end) of a document's text")
    async def passage(doc_id: Annotated[str, Query(max_length=100)], start: Annotated[int, Query(ge=0, le=MAX_OFFSET)],
                      end: Annotated[int, Query(ge=1, le=MAX_OFFSET)]) -> PassageText:
        _check_span(start, end)
        text = await call_service(service.document_text, doc_id, start, end)
        if text is None:
            raise ApiError(404, f"document {doc_id!r} has no text at characters {start}-{end}")
        return PassageText(doc_id=doc_id, start=start, end=start + len(text), text=text)

    @router.post("/preview", tags=["documents"],
                 summary="a citation's quote with the document text around it (the preview rule of the UI and /embed)")
    async def preview(body: PreviewBody) -> PreviewResponse:
        _check_span(body.start, body.end)
        found = await call_service(document_preview, service.document_text, body.doc_id, body.start, body.end,
                                   body.quote)
        before, quote, after = found or ("", body.quote, "")
        return PreviewResponse(doc_id=body.doc_id, start=body.start, end=body.end, before=before, quote=quote,
                               after=after, found=found is not None)

    return router
