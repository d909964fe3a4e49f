"""Security as middleware: the bearer key, readiness and body size before an /api body is read;
CSP frame-ancestors and nosniff on every response; unexpected errors contained as JSON; CORS."""

from __future__ import annotations

import hmac

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.web.errors import error_response, printable
from assistant.web.state import ServerState, log


def check_bearer(key: str | None, authorization: str | None) -> JSONResponse | None:
    """None when the `Authorization` header carries the key (or no key is set), else the 401."""
    if not key:
        return None
    challenge = {"WWW-Authenticate": 'Bearer realm="assistant"'}
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(401, "missing API key: send the header 'Authorization: Bearer <key>' "
                                   "(the key the server was started with, ASSISTANT_API_KEY)", challenge)
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        return error_response(401, "wrong API key in the Authorization header; use the server's "
                                   "ASSISTANT_API_KEY", challenge)
    return None


def password_is_key(key: str | None, password: str) -> bool:
    """The chat UI's login: any user name, the API key as the password."""
    return key is not None and hmac.compare_digest(password.encode(), key.encode())


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
        problem = check_bearer(self.state.config.api_key, headers.get("authorization")) or self.state.check_ready()
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


def install_security(app: FastAPI, state: ServerState) -> None:
    """Add the middleware, innermost first. CORS is added last = outermost: it answers preflights
    (which carry no key) and decorates every response, 401s included; gradio sees this
    CORSMiddleware and leaves CORS to it."""
    config = state.config
    app.add_middleware(ContainErrors)
    app.add_middleware(ApiGuard, state=state)
    app.add_middleware(SecurityHeaders, frame_ancestors=config.frame_ancestors)
    app.add_middleware(CORSMiddleware, allow_origins=config.allowed_origins, allow_credentials=False,
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                       max_age=600)
