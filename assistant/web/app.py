"""One process, one port: the Gradio chat UI, a JSON API and an embeddable chat page.

    /            redirects to the chat UI (/ui/), or to /embed when the UI is not mounted
    /ui/         Gradio chat UI (`assistant.ui.build_ui`); with an API key it shows a login page
    /embed       a small self-contained chat page for a portal's iframe (plain HTML + JS)
    /api/...     JSON API (`assistant.web.routes`); `Authorization: Bearer <key>` when a key is set
    /healthz     200 when ready, 503 while the model and index load (never needs the key)
    /docs        OpenAPI documentation

Every request talks to one shared `AssistantService` (model and index loaded once). Its calls are
blocking, so they run in worker threads and the event loop stays free. The model and index warm
up in a background thread after start-up; until then the API answers 503.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from assistant.service import AssistantService
from assistant.web.assets import embed_page
from assistant.web.config import ServerConfig, check_origins, normalize_frame_ancestors
from assistant.web.errors import SafeJSONResponse, install_error_handlers
from assistant.web.models import Health
from assistant.web.routes import api_router
from assistant.web.security import install_security, password_is_key
from assistant.web.state import ServerState


def create_app(service: AssistantService, config: ServerConfig) -> FastAPI:
    """The whole server as one ASGI app (serve it with uvicorn; `run.serve()` does that)."""
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
    install_error_handlers(app)
    app.include_router(api_router(state))

    @app.get("/healthz", tags=["health"], responses={200: {"model": Health}, 503: {"model": Health}})
    async def healthz() -> JSONResponse:
        if state.load_error is not None:  # the details are in the log and, with the key, in /api errors
            return JSONResponse({"status": "error", "error": "the assistant failed to load; see the server log"},
                                status_code=503)
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})
        stats = await run_in_threadpool(service.stats)
        return JSONResponse({"status": "ok", "documents": stats["documents"], "chunks": stats["chunks"],
                             "model": stats["model"]})

    page, page_csp = embed_page(auth=config.api_key is not None, frame_ancestors=config.frame_ancestors)

    @app.get("/embed", response_class=HTMLResponse, include_in_schema=False)
    async def embed() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp, "Cache-Control": "no-cache"})

    if config.mount_ui:
        _mount_ui(app, service, config)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if config.mount_ui else "/embed", status_code=307)

    install_security(app, state)
    return app


def _mount_ui(app: FastAPI, service: AssistantService, config: ServerConfig) -> None:
    import gradio as gr

    from assistant.ui import build_ui

    key = config.api_key

    def check_login(_username: str, password: str) -> bool:
        return password_is_key(key, password)

    gr.mount_gradio_app(app, build_ui(service), path="/ui", auth=check_login if key else None,
                        auth_message="Enter any user name and the server's API key as the password." if key else None,
                        max_file_size=service.upload_limit, show_error=True)
