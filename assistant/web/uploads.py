"""Uploads: a streaming multipart/form-data reader that refuses a bad name, type or size as soon
as it is seen, and never stores anything itself."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from assistant.loaders import supported_suffixes
from assistant.service import UploadError
from assistant.web.errors import ApiError, printable
from assistant.web.state import MULTIPART_OVERHEAD, ServerState

MAX_FILES_PER_UPLOAD = 100

# The request body as /docs shows it (the route reads the stream itself, so FastAPI cannot infer it).
UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def accepted_types() -> str:
    return ", ".join(supported_suffixes())


async def read_uploads(request: Request, state: ServerState) -> list[tuple[str, bytes]]:
    """Read multipart files while checking them: a refused name or type stops reading at that
    part's headers, a size over the limit stops at that byte; a body that ends before its closing
    boundary (truncated, or a Content-Length shorter than the body) is refused whole. Nothing is
    stored here."""
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
