"""What the API tests (tests/test_api*.py) share: the three small documents the servers index, the
keys and origins they are configured with, starting a served index, and reading its answers
(listings, multipart bodies built by hand, SSE events). The fixtures are in conftest.py."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.ingest import Ingestor
from assistant.service import AssistantService
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig

KEY = "key-" + secrets.token_hex(12)
PORTAL = "https://portal.example.com"
EVIL = "https://evil.example.net"
UPLOAD_LIMIT_MB = 0.05  # 52,428 bytes: small, so the size checks are cheap to exercise

DOCS = {
    "lighthouse.txt": (
        "The Brightwater Lighthouse\n\n"
        "The Brightwater lighthouse was built in 1871 by the engineer Margaret Holt. "
        "Its lamp can be seen from 22 nautical miles away on a clear night. "
        "The last keeper left in 1964, when the light was automated. "
        "The keeper's cottage now houses a small museum about shipwrecks on the coast.\n"
    ),
    "orchard.md": (
        "# Hillside orchard notes\n\n"
        "The hillside orchard grows fourteen varieties of apple and three of pear. "
        "Harvest usually starts in the last week of September and lasts about five weeks. "
        "Pruning is done in February, before the buds open.\n"
    ),
    "unsafe.txt": (
        "Project codenames\n\n"
        "Markup in this file must be shown as plain text by every client. "
        "The codename of the Tuesday project is BLUEFINCH <img src=x onerror=\"window.__xss=1\"> "
        "<script>window.__xss=2</script> and nobody outside the team may use it.\n"
    ),
}


@dataclass
class Served:
    url: str
    service: AssistantService
    index_dir: Path
    config: ServerConfig

    @property
    def uploads(self) -> Path:
        return self.index_dir / "uploads"


def write_docs(folder: Path) -> Path:
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def serve(folder: Path, docs_dir: Path | None, embedder: Embedder, config: ServerConfig) -> Iterator[Served]:
    settings = Settings(index_dir=folder / "index", max_upload_mb=UPLOAD_LIMIT_MB)
    if docs_dir is not None:
        report = Ingestor(settings, embedder=embedder).ingest_paths([docs_dir], progress=False)
        assert not report.failed, report.summary()
    service = AssistantService(settings, embedder=embedder)
    try:
        with ServerThread(create_app(service, config)) as url:
            wait_ready(url)
            yield Served(url, service, settings.index_dir, config)
    finally:
        service.close()


def ui_available() -> bool:
    import assistant.ui

    return hasattr(assistant.ui, "build_ui")


def listing(client: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.get("/api/documents", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def doc_hashes(client: httpx.Client) -> dict[str, tuple[str, int]]:
    return {d["source"]: (d["content_hash"], d["n_chunks"]) for d in listing(client)["documents"]}


def multipart(parts: list[tuple[str, bytes]], boundary: str = "testboundary1234") -> tuple[bytes, str]:
    """A multipart body built by hand, so file names are sent exactly as given."""
    body = b""
    for name, data in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, parsed data) pairs, read incrementally from a streaming response."""
    kind, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            yield kind, json.loads("\n".join(data))
            kind, data = "message", []
