"""Every failure the server answers is JSON `{"error": message}`; nothing echoes raw input back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.index import StoreError
from assistant.service import UploadError


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


async def call_service(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking service call in a worker thread; its refusals become JSON errors."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except UploadError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    except StoreError as exc:
        raise ApiError(503, f"the index is not available right now: {exc}") from exc
    except (ValueError, OverflowError) as exc:  # InputError included: what the caller sent is refused
        raise ApiError(400, printable(exc, 1000)) from exc


def install_error_handlers(app: FastAPI) -> None:
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
