"""Server-sent events for /api/ask/stream: `token` pieces, `status`/`warning` notes, then one
`final` with the /api/ask body (or `error`). Framing is FastAPI's own `format_sse_event`; the
stream is ours because its first event is taken before the status line is sent (so a refused
question still gets a 400), and because closing it stops a backend that is still generating."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from assistant.index import StoreError
from assistant.types import StreamEvent
from assistant.web.state import log

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(kind: str, data: object) -> bytes:
    return format_sse_event(event=kind, data_str=json.dumps(data, ensure_ascii=False))


def encode(event: StreamEvent) -> bytes | None:
    if event.kind in ("token", "status", "warning"):
        return sse_event(event.kind, {"text": event.text})
    if event.kind == "final" and event.result is not None:
        return sse_event("final", event.result.to_dict())
    return None  # kinds this server does not know yet


async def _frames(events: Iterator[StreamEvent], first: StreamEvent | None) -> AsyncIterator[bytes]:
    final_sent = False
    try:
        event = first
        while event is not None:
            data = encode(event)
            if data is not None:
                final_sent = final_sent or event.kind == "final"
                yield data
            event = await run_in_threadpool(next, events, None)
        if not final_sent:
            yield sse_event("error", {"error": "the answer ended without a result; try again"})
    except Exception as exc:  # mid-stream: the status line is gone, so report in the stream
        log.exception("streamed answer failed")
        message = str(exc) if isinstance(exc, ValueError | StoreError) else f"the answer failed: {type(exc).__name__}"
        yield sse_event("error", {"error": message})
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # stops a backend that is still generating (client gone)
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(close)


def event_stream(events: Iterator[StreamEvent], first: StreamEvent | None) -> EventSourceResponse:
    """The response for a stream whose first event has already been taken."""
    return EventSourceResponse(_frames(events, first), headers=STREAM_HEADERS)
