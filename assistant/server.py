"""One process, one port: the Gradio chat UI, a JSON API and an embeddable chat page.

    /            redirects to the chat UI (/ui/), or to /embed when the UI is not mounted
    /ui/         Gradio chat UI (`assistant.ui.build_ui`); with an API key it shows a login page
    /embed       a small self-contained chat page for a portal's iframe (plain HTML + JS)
    /api/...     JSON API (see `create_app`); `Authorization: Bearer <key>` when a key is set
    /healthz     200 when ready, 503 while the model and index load (never needs the key)
    /docs        OpenAPI documentation

Every request talks to one shared `AssistantService` (model and index loaded once). Its calls are
blocking, so they run in worker threads and the event loop stays free. The model and index warm
up in a background thread after start-up; until then the API answers 503.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import anyio
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.index import StoreError
from assistant.loaders import supported_suffixes
from assistant.service import (
    MAX_HISTORY_ITEMS,
    MAX_OFFSET,
    MAX_QUESTION_CHARS,
    MAX_SEARCH_TOP_K,
    MAX_TOP_K,
    AssistantService,
    StreamEvent,
    UploadError,
)

log = logging.getLogger("uvicorn.error")  # uvicorn's configured logger: messages show in the server output

MAX_FILES_PER_UPLOAD = 100
MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries allowed on top of the upload limit
MAX_PASSAGE_CHARS = 20_000
MAX_JSON_BYTES = 2 * 1024 * 1024  # any other /api request body (questions, history, feedback)
LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str | None = None  # None: no authentication (then only loopback, unless insecure_no_auth)
    allowed_origins: list[str] = field(default_factory=list)  # CORS allowlist; none by default
    frame_ancestors: list[str] = field(default_factory=lambda: ["'self'"])  # who may frame /ui and /embed
    mount_ui: bool = True
    insecure_no_auth: bool = False  # allow a non-loopback host without a key (trusted networks only)


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: a string that is not valid Unicode (a lone surrogate) goes out
    with '?' in its place instead of failing the response (a 500 and a reset connection)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":")).encode("utf-8", "replace")


def printable(value: object, limit: int = 200) -> str:
    """Text safe to echo in an error: valid UTF-8, at most `limit` characters."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   extra: dict[str, object] | None = None) -> JSONResponse:
    return SafeJSONResponse({"error": message, **(extra or {})}, status_code=status, headers=headers)


# -- configuration checks (used by `assistant serve`) -------------------------------------------


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: ServerConfig) -> None:
    """Refuse to listen beyond this machine without an API key, unless explicitly allowed."""
    if config.api_key is None and not is_loopback(config.host) and not config.insecure_no_auth:
        raise ValueError(
            f"refusing to listen on {config.host} without an API key: anyone who can reach this port could "
            "read and change the index. Set ASSISTANT_API_KEY (or --api-key), or pass --insecure-no-auth "
            "on a trusted network"
        )


def parse_list(values: list[str] | str | None) -> list[str]:
    """Items from repeated flags and/or comma- or space-separated strings, in order, without repeats."""
    if values is None:
        return []
    raw = [values] if isinstance(values, str) else values
    items: list[str] = []
    for value in raw:
        for item in value.replace(",", " ").split():
            if item not in items:
                items.append(item)
    return items


def normalize_frame_ancestors(values: list[str]) -> list[str]:
    """CSP frame-ancestors sources; bare keywords (self, none) get their quotes."""
    sources = []
    for value in values:
        if any(ch in value for ch in ";,\r\n\"") or not value.isprintable():
            raise ValueError(f"frame ancestor {value!r} is not a CSP source (use e.g. 'self' https://portal.example.com)")
        if value.lower() in {"self", "none"}:
            value = f"'{value.lower()}'"
        sources.append(value)
    if "'none'" in sources and len(sources) > 1:
        raise ValueError("frame ancestor 'none' cannot be combined with other sources")
    return sources or ["'self'"]


def set_compute_threads(threads: int) -> None:
    """Threads per torch / faiss call. A server gets its parallelism from concurrent requests (and
    batches concurrent query encodes), so 1 is best: more make each call spin-wait for busy cores."""
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, not {threads}")
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def check_origins(values: list[str]) -> list[str]:
    origins = []
    for value in values:
        value = value.rstrip("/")
        if value != "*" and not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError(f"allowed origin {value!r} must look like https://portal.example.com")
        origins.append(value)
    return origins


# -- middleware ---------------------------------------------------------------------------------


class ApiGuard:
    """For /api paths, before any body is read: the API key (401), readiness (503), and the
    announced body size (413; uploads have their own limit). A trailing slash is dropped, so
    `/api/documents/` is the route `/api/documents` (a JSON answer, 405 for DELETE), never a
    307 redirect."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.state.check_key(headers.get("authorization")) or self.state.check_ready()
        if problem is None:
            upload = scope["method"] == "POST" and path.rstrip("/") == "/api/documents"
            problem = self.state.check_length(headers.get("content-length"), upload)
        if problem is not None:
            await problem(scope, receive, send)
            return
        if len(path) > len("/api/") and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/")}
            if isinstance(scope.get("raw_path"), bytes):
                scope["raw_path"] = scope["raw_path"].rstrip(b"/")
        await self.app(scope, receive, send)


class ContainErrors:
    """An unexpected exception becomes a logged 500 JSON answer, and the connection lives on.
    (Starlette's own last-resort handler re-raises after answering, so uvicorn closes the
    connection and the client's next request on it is reset.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.exception("request %s %s failed", scope.get("method"), printable(scope.get("path", "")))
            if started:
                raise  # too late for a status: the connection has to go
            await error_response(500, f"internal error ({type(exc).__name__}); see the server log")(scope, receive, send)


class SecurityHeaders:
    """`Content-Security-Policy: frame-ancestors ...` on every response that has no CSP of its own
    (the UI, the API, the docs), no X-Frame-Options to contradict it, and nosniff."""

    def __init__(self, app: ASGIApp, frame_ancestors: list[str]) -> None:
        self.app = app
        self.csp = "frame-ancestors " + " ".join(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = self.csp
                if "x-frame-options" in headers:
                    del headers["x-frame-options"]
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- state shared by the routes -----------------------------------------------------------------


class ServerState:
    def __init__(self, service: AssistantService, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.key = config.api_key.encode() if config.api_key else None
        self.load_error: str | None = None
        self.upload_limit = int(service.settings.max_upload_mb * 1024 * 1024)

    def warm_up(self) -> None:
        if self.service.ready:
            return
        started = time.perf_counter()
        try:
            self.service.warm_up()
            stats = self.service.stats()
            log.info("Ready: %s documents, %s chunks (warm-up %.1f s)", stats["documents"], stats["chunks"],
                     time.perf_counter() - started)
        except Exception as exc:  # the server keeps answering 503 with the reason
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the assistant failed to load its model or index")

    def check_key(self, authorization: str | None) -> JSONResponse | None:
        if self.key is None:
            return None
        challenge = {"WWW-Authenticate": 'Bearer realm="assistant"'}
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(401, "missing API key: send the header 'Authorization: Bearer <key>' "
                                       "(the key the server was started with, ASSISTANT_API_KEY)", challenge)
        if not hmac.compare_digest(token.strip().encode(), self.key):
            return error_response(401, "wrong API key in the Authorization header; use the server's "
                                       "ASSISTANT_API_KEY", challenge)
        return None

    def check_ready(self) -> JSONResponse | None:
        if self.load_error is not None:
            return error_response(503, f"the assistant failed to load ({self.load_error}); see the server log")
        if not self.service.ready:
            return error_response(503, "the assistant is still loading its model and index; retry in a few seconds",
                                  {"Retry-After": "2"})
        return None

    def check_length(self, content_length: str | None, upload: bool) -> JSONResponse | None:
        if content_length is None:
            return None  # chunked: uploads are measured while reading
        try:
            length = int(content_length)
        except ValueError:
            return error_response(400, f"Content-Length {content_length!r} is not a number")
        if upload and length > self.upload_limit + MULTIPART_OVERHEAD:
            return error_response(413, self.too_large(length))
        if not upload and length > MAX_JSON_BYTES:
            return error_response(413, f"the request body is {length / 1e6:.1f} MB; API requests other than "
                                       f"uploads are limited to {MAX_JSON_BYTES / 1e6:.0f} MB")
        return None

    def too_large(self, size: int) -> str:
        mb = self.service.settings.max_upload_mb
        return (f"the upload is {size / 1e6:.1f} MB, over the {mb:g} MB limit for one upload request "
                "(all its files together; ASSISTANT_MAX_UPLOAD_MB): send fewer or smaller files")


# -- request bodies -----------------------------------------------------------------------------


class AskBody(BaseModel):
    question: str = Field(..., max_length=MAX_QUESTION_CHARS, description="the question")
    history: list[Annotated[str, Field(max_length=MAX_QUESTION_CHARS)]] = Field(
        default_factory=list, max_length=MAX_HISTORY_ITEMS, description="earlier questions of the conversation, oldest first")
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="passages to retrieve (default from settings)")
    backend: str | None = Field(None, description="answer backend (GET /api/info lists them; default: the first)")


class FeedbackBody(BaseModel):
    rating: Literal[1, -1] = Field(..., description="1 thumbs up, -1 thumbs down")
    question: str = Field(..., max_length=MAX_QUESTION_CHARS)
    answer: str = Field("", max_length=100_000)
    comment: str = Field("", max_length=4000)
    history: list[Annotated[str, Field(max_length=MAX_QUESTION_CHARS)]] = Field(default_factory=list,
                                                                              max_length=MAX_HISTORY_ITEMS)
    citations: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    abstained: bool = False


UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def accepted_types() -> str:
    return ", ".join(supported_suffixes())


# -- the app ------------------------------------------------------------------------------------


def create_app(service: AssistantService, config: ServerConfig) -> FastAPI:
    """The whole server as one ASGI app (serve it with uvicorn; `serve()` does that)."""
    config = replace(config, frame_ancestors=normalize_frame_ancestors(config.frame_ancestors),
                     allowed_origins=check_origins(config.allowed_origins))
    state = ServerState(service, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=state.warm_up, name="assistant-warm-up", daemon=True).start()
        yield

    app = FastAPI(title="Document assistant", version="1", lifespan=lifespan, default_response_class=SafeJSONResponse,
                  description="Ask questions about the indexed documents; every claim cites its passage.")
    app.state.assistant = state
    _install_error_handlers(app)
    app.include_router(_api_router(state))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        if state.load_error is not None:  # the details are in the log and, with the key, in /api errors
            return JSONResponse({"status": "error", "error": "the assistant failed to load; see the server log"},
                                status_code=503)
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})
        stats = await run_in_threadpool(service.stats)
        return JSONResponse({"status": "ok", "documents": stats["documents"], "chunks": stats["chunks"],
                             "model": stats["model"]})

    embed_page, embed_csp = _embed_page(auth=config.api_key is not None, frame_ancestors=config.frame_ancestors)

    @app.get("/embed", response_class=HTMLResponse, include_in_schema=False)
    async def embed() -> HTMLResponse:
        return HTMLResponse(embed_page, headers={"Content-Security-Policy": embed_csp, "Cache-Control": "no-cache"})

    ui_mounted = config.mount_ui and _mount_ui(app, service, config)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if ui_mounted else "/embed", status_code=307)

    # Added last = outermost: CORS answers preflights (which carry no key) and decorates every
    # response, 401s included; gradio sees this CORSMiddleware and leaves CORS to it.
    app.add_middleware(ContainErrors)
    app.add_middleware(ApiGuard, state=state)
    app.add_middleware(SecurityHeaders, frame_ancestors=config.frame_ancestors)
    app.add_middleware(CORSMiddleware, allow_origins=config.allowed_origins, allow_credentials=False,
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                       max_age=600)
    return app


def _mount_ui(app: FastAPI, service: AssistantService, config: ServerConfig) -> bool:
    try:
        from assistant.ui import build_ui  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.warning("assistant.ui.build_ui is not available: serving the API and /embed without the chat UI")
        return False
    import gradio as gr

    key = config.api_key

    def check_login(_username: str, password: str) -> bool:
        return key is not None and hmac.compare_digest(password.encode(), key.encode())

    gr.mount_gradio_app(app, build_ui(service), path="/ui", auth=check_login if key else None,
                        auth_message="Enter any user name and the server's API key as the password." if key else None,
                        max_file_size=int(service.settings.max_upload_mb * 1024 * 1024), show_error=True)
    return True


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input back: it may be huge, or not encodable (a lone surrogate).
        parts, detail = [], []
        for err in exc.errors()[:20]:
            loc = [p if isinstance(p, int) else printable(p, 60) for p in err.get("loc", ())]
            where = ".".join(str(p) for p in loc if p not in ("body", "query", "path")) or "body"
            msg = printable(err.get("msg", "invalid"))
            if err.get("type") == "string_unicode":
                msg = "contains invalid Unicode (a lone surrogate such as \\ud800): send valid UTF-8 text"
            parts.append(f"{where}: {msg}")
            detail.append({"type": printable(err.get("type", ""), 60), "loc": loc, "msg": msg})
        message = "invalid request: " + "; ".join(parts) + " (see /docs for the expected fields)"
        return SafeJSONResponse({"error": message, "detail": jsonable_encoder(detail)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {printable(request.url.path)} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {printable(request.url.path)} (see /docs)"
            if request.method == "DELETE" and request.url.path.rstrip("/") == "/api/documents":
                message += "; remove one document with DELETE /api/documents/{doc_id} (GET /api/documents lists the ids)"
        else:
            message = printable(exc.detail, 1000)
        return error_response(exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking service call in a worker thread; its refusals become JSON errors."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except UploadError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    except StoreError as exc:
        raise ApiError(503, f"the index is not available right now: {exc}") from exc
    except (ValueError, OverflowError) as exc:  # InputError included: what the caller sent is refused
        raise ApiError(400, printable(exc, 1000)) from exc


def _question(body: AskBody) -> str:
    if not body.question.strip():
        raise ApiError(400, "question is empty: send a non-empty \"question\" string")
    return body.question


def _api_router(state: ServerState) -> APIRouter:
    service = state.service
    # Documents the bearer scheme in /docs ("Authorize"); the key itself is checked by ApiGuard.
    router = APIRouter(prefix="/api", dependencies=[Depends(HTTPBearer(auto_error=False))])

    @router.get("/info", tags=["info"], summary="answer backends, upload limit and accepted file types")
    async def info() -> dict[str, Any]:
        return {"answer_modes": await _call(service.answer_modes), "max_upload_mb": service.settings.max_upload_mb,
                "accepted_types": supported_suffixes(), "top_k": service.settings.top_k}

    @router.post("/ask", tags=["ask"], summary="answer a question with citations (same shape as `assistant ask --json`)")
    async def ask(body: AskBody) -> dict[str, object]:
        result = await _call(service.ask, _question(body), history=body.history, top_k=body.top_k,
                             backend=body.backend)
        return result.to_dict()  # type: ignore[no-any-return]

    @router.post("/ask/stream", tags=["ask"], response_class=StreamingResponse,
                 summary="the answer as server-sent events: `token` pieces, `status`/`warning` notes, then `final` (or `error`)")
    async def ask_stream(body: AskBody) -> StreamingResponse:
        events = await _call(service.ask_stream, _question(body), history=body.history, top_k=body.top_k,
                             backend=body.backend)
        # The first event is taken before answering, so a refused question gets a proper status.
        first = await _call(next, events, None)
        return StreamingResponse(_sse(events, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/search", tags=["search"], summary="ranked passages for a query")
    async def search(q: Annotated[str, Query(max_length=MAX_QUESTION_CHARS, description="the query")],
                     top_k: Annotated[int | None, Query(ge=1, le=MAX_SEARCH_TOP_K)] = None,
                     mode: Annotated[str, Query(description="hybrid, dense or bm25")] = "hybrid") -> dict[str, object]:
        if not q.strip():
            raise ApiError(400, "query is empty: pass ?q=<words to search for>")
        result = await _call(service.search, q, top_k=top_k, mode=mode)
        return {"query": result.query, "passages": [p.to_dict() for p in result.passages], "timings": result.timings}

    @router.get("/documents", tags=["documents"], summary="indexed documents with chunk counts, and index stats")
    async def documents() -> dict[str, object]:
        docs = await _call(service.documents)
        stats = await _call(service.stats)
        return {"documents": [d.__dict__ for d in docs], "stats": stats}

    @router.post("/documents", tags=["documents"], openapi_extra=UPLOAD_SCHEMA,
                 summary="upload and index one or more files (multipart field `files`)")
    async def upload(request: Request) -> JSONResponse:
        files = await _read_uploads(request, state)
        report = await _call(service.ingest_uploads, files)
        results = [{**r.__dict__, "filename": r.source.replace("\\", "/").rsplit("/", 1)[-1]} for r in report.results]
        body: dict[str, object] = {"results": results, "embedded_chunks": report.embedded_chunks,
                                   "seconds": round(report.seconds, 2)}
        if report.failed and len(report.failed) == len(report.results):
            reasons = "; ".join(f"{r['filename']}: {r['reason']}" for r in results)
            return error_response(422, f"nothing was indexed: {reasons}", extra=body)
        return JSONResponse(body)

    @router.delete("/documents/{doc_id}", tags=["documents"], summary="remove a document by id")
    async def remove(doc_id: str) -> dict[str, object]:
        docs = await _call(service.documents)
        if not any(d.id == doc_id for d in docs) or not await _call(service.remove, doc_id):
            raise ApiError(404, f"no document with id {doc_id!r}; GET /api/documents lists them")
        return {"removed": doc_id}

    @router.post("/feedback", tags=["feedback"], summary="thumbs up/down on an answer")
    async def feedback(body: FeedbackBody) -> dict[str, object]:
        item_id = await _call(service.feedback.add, body.rating, body.question, body.answer,
                              citations=body.citations, comment=body.comment, history=body.history,
                              abstained=body.abstained)
        return {"id": item_id}

    @router.get("/passage", tags=["documents"], summary="characters [start, end) of a document's text")
    async def passage(doc_id: Annotated[str, Query(max_length=100)], start: Annotated[int, Query(ge=0, le=MAX_OFFSET)],
                      end: Annotated[int, Query(ge=1, le=MAX_OFFSET)]) -> dict[str, object]:
        if end <= start or end - start > MAX_PASSAGE_CHARS:
            raise ApiError(400, f"end must be after start and at most {MAX_PASSAGE_CHARS} characters further")
        text = await _call(service.document_text, doc_id, start, end)
        if text is None:
            raise ApiError(404, f"document {doc_id!r} has no text at characters {start}-{end}")
        return {"doc_id": doc_id, "start": start, "end": start + len(text), "text": text}

    return router


# -- streaming ----------------------------------------------------------------------------------


def _event(kind: str, data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _encode(event: StreamEvent) -> bytes | None:
    if event.kind == "token":
        return _event("token", {"text": event.text})
    if event.kind in ("status", "warning"):
        return _event(event.kind, {"text": event.text})
    if event.kind == "final" and event.result is not None:
        return _event("final", event.result.to_dict())
    return None  # kinds this server does not know yet


async def _sse(events: Iterator[StreamEvent], first: StreamEvent | None) -> AsyncIterator[bytes]:
    final_sent = False
    try:
        event = first
        while event is not None:
            data = _encode(event)
            if data is not None:
                final_sent = final_sent or event.kind == "final"
                yield data
            event = await run_in_threadpool(next, events, None)
        if not final_sent:
            yield _event("error", {"error": "the answer ended without a result; try again"})
    except Exception as exc:  # mid-stream: the status line is gone, so report in the stream
        log.exception("streamed answer failed")
        message = str(exc) if isinstance(exc, ValueError | StoreError) else f"the answer failed: {type(exc).__name__}"
        yield _event("error", {"error": message})
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # stops a backend that is still generating (client gone)
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(close)


# -- uploads ------------------------------------------------------------------------------------


async def _read_uploads(request: Request, state: ServerState) -> list[tuple[str, bytes]]:
    """Read multipart files while checking them: a refused name or type stops reading at that
    part's headers, a size over the limit stops at that byte; a body that ends before its closing
    boundary (truncated, or a Content-Length shorter than the body) is refused whole. Nothing is
    stored here."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.requests import ClientDisconnect

    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data":
        raise ApiError(415, "send the files as multipart/form-data in fields named 'files' "
                            f"(accepted file types: {accepted_types()})")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "the multipart/form-data Content-Type has no boundary")

    files: list[tuple[str, bytearray]] = []
    part: dict[str, Any] = {}
    names: set[str] = set()
    complete: dict[str, bool] = {"parts": True, "body": False}

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, field=b"", value=b"", data=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" not in options:
            return  # a plain form field: ignored
        raw = options[b"filename"].decode("utf-8", "replace")
        name = state.service.check_upload(raw, 0)  # bad name or type: refuse before reading the data
        if name in names:
            raise UploadError(f"{name}: two files with this name in one upload; rename one")
        if len(files) >= MAX_FILES_PER_UPLOAD:
            raise UploadError(f"more than {MAX_FILES_PER_UPLOAD} files in one upload; send them in several requests")
        names.add(name)
        part["data"] = bytearray()
        files.append((raw, part["data"]))
        complete["parts"] = False  # until this part's closing boundary

    def on_part_end() -> None:
        complete["parts"] = True

    def on_end() -> None:
        complete["body"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("data") is not None:
            part["data"] += data[start:end]
            if len(part["data"]) > state.upload_limit:
                state.service.check_upload(files[-1][0], len(part["data"]))  # raises the 413

    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_end": on_end,
    })
    total = 0
    try:
        async for chunk in request.stream():
            parser.write(chunk)  # first, so a file over the limit is named in the error
            total += len(chunk)
            if total > state.upload_limit + MULTIPART_OVERHEAD:
                raise ApiError(413, state.too_large(total))
        parser.finalize()
    except UploadError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    except MultipartParseError as exc:
        raise ApiError(400, f"the multipart/form-data body is malformed: {printable(exc)}") from exc
    except ClientDisconnect as exc:
        raise ApiError(400, "the upload was cut off before its end (the client disconnected); nothing was "
                            "stored: send it again") from exc
    if not (complete["body"] and complete["parts"]):
        where = f" in {files[-1][0]!r}" if files and not complete["parts"] else ""
        raise ApiError(400, f"the multipart/form-data body ends before its closing boundary{where} (truncated, or a "
                            "Content-Length shorter than the body); nothing was stored: send the whole upload again")
    if not files:
        raise ApiError(400, "no files in the upload: send one or more files in multipart fields named 'files' "
                            f"(accepted file types: {accepted_types()})")
    return [(name, bytes(data)) for name, data in files]


# -- the embeddable page ------------------------------------------------------------------------


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def _embed_page(auth: bool, frame_ancestors: list[str]) -> tuple[str, str]:
    from assistant.embed_page import PAGE, SCRIPT, STYLE

    html = PAGE.replace("{auth}", "1" if auth else "0").replace("{style}", STYLE).replace("{script}", SCRIPT)
    csp = (f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           f"frame-ancestors {' '.join(frame_ancestors)}")
    return html, csp


# -- running ------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn.Server that reports once its sockets listen (the base URL, for printing)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.on_listening = on_listening
        self.base_url = ""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else (
            f"[{host}]" if ":" in host else host)
        self.base_url = f"http://{shown}:{port}"
        if self.on_listening is not None:
            self.on_listening(self.base_url)


def _uvicorn_config(app: FastAPI, host: str, port: int, **kwargs: Any) -> uvicorn.Config:
    # Keep-alive longer than clients' and proxies' idle pools (httpx 5 s, nginx 60-75 s): with
    # uvicorn's 5 s default, a pooled connection can be closed just as a request goes out on it.
    return uvicorn.Config(app, host=host, port=port, timeout_keep_alive=75, timeout_graceful_shutdown=5, **kwargs)


def serve(service: AssistantService, config: ServerConfig, log_level: str = "info") -> None:
    """Run the server in the foreground until Ctrl-C; prints where to find it once listening."""
    check_exposure(config)
    app = create_app(service, config)
    has_ui = any(getattr(r, "path", "") == "/ui" for r in app.routes)

    def announce(base: str) -> None:
        if config.api_key is None and is_loopback(config.host):
            print("No API key: listening only on loopback; set ASSISTANT_API_KEY to expose the server "
                  "to other machines.", flush=True)
        elif config.api_key is None:
            print(f"WARNING: no API key and listening on {config.host} (--insecure-no-auth): anyone who can "
                  "reach this port can read and change the index.", flush=True)
        else:
            print("API key required: 'Authorization: Bearer <key>' for /api; the key is the UI password.", flush=True)
        if has_ui:
            print(f"Chat UI: {base}/ui/", flush=True)
        print(f"API docs: {base}/docs", flush=True)
        print(f"Embed page: {base}/embed", flush=True)

    server = _Server(_uvicorn_config(app, config.host, config.port, log_level=log_level), on_listening=announce)
    server.run()


class ServerThread:
    """A real server on a loopback port in a background thread (tests, benchmarks)::

        with ServerThread(create_app(service, config)) as base_url:
            httpx.get(base_url + "/healthz")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, **uvicorn_kwargs: Any) -> None:
        uvicorn_kwargs.setdefault("log_level", "warning")
        self.server = _Server(_uvicorn_config(app, host, port, **uvicorn_kwargs))
        self.thread = threading.Thread(target=self.server.run, name="assistant-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self.server.base_url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_ready(base_url: str, timeout: float = 120.0) -> None:
    """Poll /healthz until 200 (raises TimeoutError)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become ready in {timeout:.0f} s")
