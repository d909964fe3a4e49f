"""What the routes and the middleware share: the service, its warm-up, readiness and body limits."""

from __future__ import annotations

import logging
import time

from fastapi.responses import JSONResponse

from assistant.service import AssistantService
from assistant.web.config import ServerConfig
from assistant.web.errors import error_response

log = logging.getLogger("uvicorn.error")  # uvicorn's configured logger: messages show in the server output

MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries allowed on top of the upload limit
MAX_JSON_BYTES = 2 * 1024 * 1024  # any other /api request body (questions, history, feedback)


class ServerState:
    def __init__(self, service: AssistantService, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.load_error: str | None = None
        self.upload_limit = service.upload_limit

    def warm_up(self) -> None:
        """Load the model and index (in a background thread: until then the API answers 503)."""
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
