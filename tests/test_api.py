"""The one-process server over real uvicorn on loopback: JSON API, SSE streaming, uploads, auth,
CORS, frame-ancestors, the /embed page (also in a real browser) and `assistant serve`.

Two module-scoped servers share the session's real embedding model: an open one (no key) and one
with an API key. Each has its own index in a temporary folder holding three small documents.
Tests that add documents remove them again, and compare counts before and after.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.ingest import Ingestor
from assistant.service import AssistantService, StreamEvent
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig, check_exposure

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api_docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _serve(folder: Path, docs_dir: Path | None, embedder: Embedder, config: ServerConfig) -> Iterator[Served]:
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


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, docs_dir: Path, embedder: Embedder) -> Iterator[Served]:
    config = ServerConfig(host="127.0.0.1", port=0, allowed_origins=[PORTAL])
    yield from _serve(tmp_path_factory.mktemp("open"), docs_dir, embedder, config)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, docs_dir: Path, embedder: Embedder) -> Iterator[Served]:
    config = ServerConfig(host="127.0.0.1", port=0, api_key=KEY, allowed_origins=[PORTAL],
                          frame_ancestors=["'self'", PORTAL])
    yield from _serve(tmp_path_factory.mktemp("auth"), docs_dir, embedder, config)


@pytest.fixture(scope="module")
def client(open_server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_server.url, timeout=60) as c:
        yield c


def _ui_available() -> bool:
    import assistant.ui

    return hasattr(assistant.ui, "build_ui")


def _listing(client: httpx.Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.get("/api/documents", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _doc_hashes(client: httpx.Client) -> dict[str, tuple[str, int]]:
    return {d["source"]: (d["content_hash"], d["n_chunks"]) for d in _listing(client)["documents"]}


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "testboundary1234") -> tuple[bytes, str]:
    """A multipart body built by hand, so file names are sent exactly as given."""
    body = b""
    for name, data in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
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


# -- health and basics ------------------------------------------------------------------------


def test_healthz_reports_ready_with_counts(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["documents"] == len(DOCS) and body["chunks"] >= len(DOCS)


def test_healthz_and_api_answer_503_while_loading_then_200(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    service = AssistantService(settings, embedder=embedder)
    gate = threading.Event()
    real_warm_up = service.warm_up

    def slow_warm_up() -> None:
        assert gate.wait(30)
        real_warm_up()

    service.warm_up = slow_warm_up  # type: ignore[method-assign]
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            r = httpx.get(url + "/healthz")
            assert r.status_code == 503 and r.json() == {"status": "loading"}
            r = httpx.post(url + "/api/ask", json={"question": "anything?"})
            assert r.status_code == 503 and "loading" in r.json()["error"]
            gate.set()
            wait_ready(url, timeout=30)
            assert httpx.get(url + "/healthz").json()["documents"] == 0
            assert httpx.post(url + "/api/ask", json={"question": "anything?"}).json()["abstained"] is True
    finally:
        gate.set()
        service.close()


def test_a_failed_load_keeps_answering_503_with_the_reason(tmp_path: Path, embedder: Embedder) -> None:
    service = AssistantService(Settings(index_dir=tmp_path / "index"), embedder=embedder)

    def broken() -> None:
        raise RuntimeError("index file unreadable")

    service.warm_up = broken  # type: ignore[method-assign]
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            deadline = time.monotonic() + 10
            while httpx.get(url + "/healthz").json().get("status") != "error" and time.monotonic() < deadline:
                time.sleep(0.05)
            r = httpx.get(url + "/healthz")
            assert r.status_code == 503 and "failed to load" in r.json()["error"]
            assert "unreadable" not in r.text  # no details on the open endpoint
            r = httpx.get(url + "/api/documents")
            assert r.status_code == 503 and "index file unreadable" in r.json()["error"]
    finally:
        service.close()


def test_info_lists_answer_modes_and_accepted_types(client: httpx.Client, open_server: Served) -> None:
    body = client.get("/api/info").json()
    assert body["answer_modes"] == open_server.service.answer_modes()
    assert ".pdf" in body["accepted_types"] and body["max_upload_mb"] == UPLOAD_LIMIT_MB


def test_unknown_paths_and_methods_are_json_errors(client: httpx.Client) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and "/api/nope" in r.json()["error"]
    r = client.put("/api/ask", json={})
    assert r.status_code == 405 and "PUT" in r.json()["error"]


def test_openapi_docs_describe_the_api(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/ask", "/api/ask/stream", "/api/search", "/api/documents", "/api/documents/{doc_id}",
                 "/api/feedback", "/api/passage", "/healthz"):
        assert path in paths
    assert "multipart/form-data" in paths["/api/documents"]["post"]["requestBody"]["content"]


def test_openapi_gives_every_api_route_a_typed_response_schema(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def properties(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return dict(schema.get("properties") or {})

    routes = [(path, method, op) for path, item in spec["paths"].items() if path.startswith("/api/")
              for method, op in item.items()]
    assert len(routes) >= 10
    for path, method, op in routes:
        content = op["responses"]["200"]["content"]
        assert content and all(properties(c["schema"]) for c in content.values()), (method, path, content)
        assert properties(op["responses"]["400"]["content"]["application/json"]["schema"]) == \
            properties({"$ref": "#/components/schemas/ErrorBody"}), (method, path)
    ask = properties({"$ref": "#/components/schemas/AskResponse"})
    assert {"answer", "citations", "passages", "abstained", "backend"} <= set(ask)


def test_preview_is_the_cited_span_with_its_context(client: httpx.Client) -> None:
    citation = client.post("/api/ask", json={"question": "When is pruning done in the orchard?"}).json()["citations"][0]
    body = {k: citation[k] for k in ("doc_id", "start", "end", "quote")}
    shown = client.post("/api/preview", json=body).json()
    text = DOCS["orchard.md"]
    assert shown["found"] and shown["quote"] == citation["quote"]
    assert shown["before"] == text[max(0, citation["start"] - 240):citation["start"]]  # 240 characters either side
    assert shown["after"] == text[citation["end"]:citation["end"] + 240].rstrip("\n")  # (the stored text's end)
    moved = client.post("/api/preview", json={**body, "quote": "a quote the span does not hold"}).json()
    assert not moved["found"] and (moved["before"], moved["after"]) == ("", "")


# -- asking -----------------------------------------------------------------------------------


def test_ask_returns_the_cli_json_shape_with_citations(client: httpx.Client, open_server: Served) -> None:
    question = "When was the Brightwater lighthouse built?"
    r = client.post("/api/ask", json={"question": question})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = open_server.service.ask(question).to_dict()
    assert set(body) == set(direct)
    assert body["answer"] == direct["answer"] and "1871" in body["answer"]
    assert not body["abstained"] and body["citations"]
    citation = body["citations"][0]
    assert citation["source"].endswith("lighthouse.txt")
    text = DOCS["lighthouse.txt"]
    assert text[citation["start"]:citation["end"]] == citation["quote"]
    assert f"[{citation['n']}]" in body["answer"]


def test_ask_uses_history_for_follow_ups(client: httpx.Client) -> None:
    r = client.post("/api/ask", json={"question": "And when did its last keeper leave?",
                                      "history": ["When was the Brightwater lighthouse built?"], "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "1964" in body["answer"]
    assert "lighthouse" in body["standalone_question"].lower()


@pytest.mark.parametrize("payload, field", [
    ({}, "question"),
    ({"question": "ok?", "top_k": 0}, "top_k"),
    ({"question": "ok?", "history": "not a list"}, "history"),
    ({"question": 42}, "question"),
])
def test_ask_validation_errors_are_422_with_an_error_string(client: httpx.Client, payload: dict[str, Any],
                                                             field: str) -> None:
    r = client.post("/api/ask", json=payload)
    assert r.status_code == 422
    assert field in r.json()["error"] and r.json()["detail"]


def test_oversized_json_body_is_413(client: httpx.Client) -> None:
    r = client.post("/api/ask", content=b" " * (3 * 1024 * 1024) + b'{"question": "x?"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limited to 2 MB" in r.json()["error"]


def test_ask_body_that_is_not_json_is_422(client: httpx.Client) -> None:
    r = client.post("/api/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]


def test_empty_question_and_unknown_backend_are_400(client: httpx.Client) -> None:
    r = client.post("/api/ask", json={"question": "   "})
    assert r.status_code == 400 and "question is empty" in r.json()["error"]
    r = client.post("/api/ask", json={"question": "When was it built?", "backend": "no-such-backend"})
    assert r.status_code == 400 and "extractive" in r.json()["error"]


def test_stream_sends_tokens_before_the_final_result(open_server: Served) -> None:
    question = "How far away can the lighthouse lamp be seen?"
    events: list[tuple[str, Any]] = []
    with httpx.stream("POST", open_server.url + "/api/ask/stream", json={"question": question}, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for event in _sse(r):
            events.append(event)
            if event[0] == "final":
                break
    kinds = [k for k, _ in events]
    assert "token" in kinds and kinds[-1] == "final" and kinds.index("token") < kinds.index("final")
    assert kinds.count("final") == 1 and "error" not in kinds
    final = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "token") == final["answer"]
    assert "22 nautical miles" in final["answer"] and final["citations"]
    assert final == {**open_server.service.ask(question).to_dict(), "timings": final["timings"]}


def test_stream_refusals_before_output_get_a_status(client: httpx.Client) -> None:
    r = client.post("/api/ask/stream", json={"question": ""})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    r = client.post("/api/ask/stream", json={"question": "hi?", "backend": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["error"]


def test_stream_failure_midway_is_an_error_event_notes_pass_and_unknown_kinds_are_skipped(
        open_server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(question: str, **_: Any) -> Iterator[StreamEvent]:
        yield StreamEvent("token", "Partial ")
        yield StreamEvent("status", "verifying")
        yield StreamEvent("sparkle", "?")  # a kind this server does not know
        yield StreamEvent("token", "answer")
        raise ValueError("the backend lost its connection")

    monkeypatch.setattr(open_server.service, "ask_stream", failing)
    with httpx.stream("POST", open_server.url + "/api/ask/stream", json={"question": "anything?"}) as r:
        assert r.status_code == 200
        events = list(_sse(r))
    assert events == [("token", {"text": "Partial "}), ("status", {"text": "verifying"}), ("token", {"text": "answer"}),
                      ("error", {"error": "the backend lost its connection"})]


def test_requests_run_concurrently_without_blocking_the_event_loop(
        open_server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    real_ask = open_server.service.ask

    def slow_ask(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return real_ask(*args, **kwargs)

    monkeypatch.setattr(open_server.service, "ask", slow_ask)

    async def run() -> tuple[list[httpx.Response], float, float]:
        async with httpx.AsyncClient(base_url=open_server.url, timeout=30) as c:
            started = time.perf_counter()
            asks = [asyncio.create_task(c.post("/api/ask", json={"question": f"When was the lighthouse built {i}?"}))
                    for i in range(4)]
            await asyncio.sleep(0.2)
            health = await c.get("/healthz")
            health_at = time.perf_counter() - started
            assert health.status_code == 200
            done = await asyncio.gather(*asks)
            return done, health_at, time.perf_counter() - started

    responses, health_at, total = asyncio.run(run())
    assert all(r.status_code == 200 and "1871" in r.json()["answer"] for r in responses)
    assert health_at < 0.9, f"/healthz waited {health_at:.2f} s behind running questions"
    assert total < 3.0, f"4 one-second questions took {total:.2f} s: they did not run concurrently"


# -- search, passages, feedback -----------------------------------------------------------------


def test_search_returns_ranked_passages(client: httpx.Client) -> None:
    r = client.get("/api/search", params={"q": "apple harvest September", "top_k": 2, "mode": "bm25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["passages"]) <= 2
    assert body["passages"][0]["source"].endswith("orchard.md") and "September" in body["passages"][0]["text"]
    hybrid = client.get("/api/search", params={"q": "keeper's cottage museum"}).json()
    assert hybrid["passages"][0]["source"].endswith("lighthouse.txt")


def test_search_errors(client: httpx.Client) -> None:
    r = client.get("/api/search", params={"q": "x", "mode": "fuzzy"})
    assert r.status_code == 400 and "hybrid" in r.json()["error"]
    r = client.get("/api/search", params={"q": "  "})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.get("/api/search")
    assert r.status_code == 422 and "q" in r.json()["error"]
    r = client.get("/api/search", params={"q": "x", "top_k": 0})
    assert r.status_code == 422 and "top_k" in r.json()["error"]


def test_passage_returns_the_cited_span(client: httpx.Client) -> None:
    citation = client.post("/api/ask", json={"question": "When is pruning done in the orchard?"}).json()["citations"][0]
    r = client.get("/api/passage", params={"doc_id": citation["doc_id"], "start": citation["start"],
                                           "end": citation["end"]})
    assert r.status_code == 200 and r.json()["text"] == citation["quote"]
    r = client.get("/api/passage", params={"doc_id": "0000000000000000", "start": 0, "end": 10})
    assert r.status_code == 404 and "0000000000000000" in r.json()["error"]
    r = client.get("/api/passage", params={"doc_id": citation["doc_id"], "start": 10, "end": 5})
    assert r.status_code == 400


def test_feedback_is_stored(client: httpx.Client, open_server: Served) -> None:
    answer = client.post("/api/ask", json={"question": "How many varieties of apple grow in the orchard?"}).json()
    r = client.post("/api/feedback", json={
        "rating": -1, "comment": "wanted the pears too", "question": answer["question"], "history": ["earlier?"],
        "answer": answer["answer"], "citations": answer["citations"], "abstained": answer["abstained"]})
    assert r.status_code == 200, r.text
    stored = {item.id: item for item in open_server.service.feedback.items()}[r.json()["id"]]
    assert stored.rating == -1 and stored.comment == "wanted the pears too" and stored.history == ["earlier?"]
    assert stored.citations == answer["citations"] and stored.answer == answer["answer"]
    r = client.post("/api/feedback", json={"rating": 0, "question": "q", "answer": "a"})
    assert r.status_code == 422 and "rating" in r.json()["error"]
    r = client.post("/api/feedback", json={"rating": 1, "question": " ", "answer": "a"})
    assert r.status_code == 400 and "question" in r.json()["error"]


# -- documents: list, upload, remove ------------------------------------------------------------


def test_documents_lists_chunk_counts_and_stats(client: httpx.Client) -> None:
    body = _listing(client)
    names = sorted(Path(d["source"]).name for d in body["documents"])
    assert names == sorted(DOCS)
    assert all(d["n_chunks"] >= 1 and d["id"] for d in body["documents"])
    assert body["stats"]["documents"] == len(DOCS)
    assert body["stats"]["chunks"] == sum(d["n_chunks"] for d in body["documents"])


def test_upload_then_ask_then_delete(client: httpx.Client, open_server: Served) -> None:
    before = _doc_hashes(client)
    text = b"Mount Halvard Volcano\n\nMount Halvard last erupted in 1783 and its crater lake is 90 metres deep.\n"
    r = client.post("/api/documents", files=[("files", ("volcano.txt", text, "text/plain"))])
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "added" and result["filename"] == "volcano.txt" and result["chunks"] >= 1
    assert (open_server.uploads / "volcano.txt").read_bytes() == text

    answer = client.post("/api/ask", json={"question": "When did Mount Halvard last erupt?"}).json()
    assert "1783" in answer["answer"] and answer["citations"][0]["doc_id"] == result["doc_id"]

    r = client.delete(f"/api/documents/{result['doc_id']}")
    assert r.status_code == 200 and r.json() == {"removed": result["doc_id"]}
    assert _doc_hashes(client) == before
    assert not (open_server.uploads / "volcano.txt").exists()
    answer = client.post("/api/ask", json={"question": "When did Mount Halvard last erupt?"}).json()
    assert all(c["doc_id"] != result["doc_id"] for c in answer["citations"])
    r = client.delete(f"/api/documents/{result['doc_id']}")
    assert r.status_code == 404 and result["doc_id"] in r.json()["error"]


def test_upload_several_files_in_one_request(client: httpx.Client, pdf_with_text: Any) -> None:
    before = _doc_hashes(client)
    pdf = pdf_with_text(["Quarterly report", "Revenue grew by 12 percent in the third quarter."])
    r = client.post("/api/documents", files=[
        ("files", ("report.pdf", pdf, "application/pdf")),
        ("files", ("notes.md", b"# Notes\n\nThe meeting moved to Thursday at noon.\n", "text/markdown")),
    ])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["filename"], x["status"]) for x in results] == [("report.pdf", "added"), ("notes.md", "added")]
    answer = client.post("/api/ask", json={"question": "By how much did revenue grow in the third quarter?"}).json()
    assert "12 percent" in answer["answer"]
    for x in results:
        assert client.delete(f"/api/documents/{x['doc_id']}").status_code == 200
    assert _doc_hashes(client) == before


def test_unsupported_type_is_415_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = _doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("notes.txt", b"fine text", "text/plain")),
                                             ("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))])
    assert r.status_code == 415
    error = r.json()["error"]
    assert "tool.exe" in error and ".pdf" in error and ".docx" in error and ".txt" in error
    assert _doc_hashes(client) == before
    assert not (open_server.uploads / "notes.txt").exists() and not (open_server.uploads / "tool.exe").exists()


def test_unparseable_file_is_reported_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = _doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))])
    assert r.status_code == 422
    body = r.json()
    assert "broken.pdf" in body["error"] and body["results"][0]["status"] == "failed" and body["results"][0]["reason"]
    assert _doc_hashes(client) == before
    assert not (open_server.uploads / "broken.pdf").exists()


def test_a_broken_new_version_of_an_upload_keeps_the_old_one(client: httpx.Client, open_server: Served,
                                                             pdf_with_text: Any) -> None:
    good = pdf_with_text(["Ferry timetable", "The first ferry leaves the harbour at 06:40 every weekday."])
    r = client.post("/api/documents", files=[("files", ("ferry.pdf", good, "application/pdf"))])
    assert r.status_code == 200, r.text
    doc_id = r.json()["results"][0]["doc_id"]
    before = _doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("ferry.pdf", b"%PDF-1.4 garbage", "application/pdf"))])
    assert r.status_code == 422
    assert _doc_hashes(client) == before
    assert (open_server.uploads / "ferry.pdf").read_bytes() == good
    answer = client.post("/api/ask", json={"question": "When does the first ferry leave the harbour?"}).json()
    assert "06:40" in answer["answer"]
    assert client.delete(f"/api/documents/{doc_id}").status_code == 200


@pytest.mark.parametrize("name, stored", [("../../escape.txt", "escape.txt"), ("..\\..\\win.txt", "win.txt"),
                                          ("/etc/cron.d/job.txt", "job.txt")])
def test_path_traversal_file_names_are_sanitized(client: httpx.Client, open_server: Served,
                                                 name: str, stored: str) -> None:
    body, content_type = _multipart([(name, b"Sanitizing test document about the harbour crane.\n")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["filename"] == stored and result["status"] == "added"
    assert Path(result["source"]).parent == open_server.uploads.resolve()
    assert (open_server.uploads / stored).exists()
    assert not (open_server.index_dir.parent / stored).exists() and not (open_server.index_dir / stored).exists()
    assert client.delete(f"/api/documents/{result['doc_id']}").status_code == 200


def test_unusable_file_name_is_400(client: httpx.Client) -> None:
    body, content_type = _multipart([("..", b"text")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "file name" in r.json()["error"]


def test_upload_request_errors(client: httpx.Client) -> None:
    r = client.post("/api/documents", json={"files": []})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/api/documents", data={"comment": "no file here"}, files=[])
    assert r.status_code in (400, 415)
    body, content_type = _multipart([])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "no files" in r.json()["error"]
    body, content_type = _multipart([("same.txt", b"one"), ("same.txt", b"two")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "same.txt" in r.json()["error"]


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(open_server: Served) -> None:
    port = int(open_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                     b"Content-Length: 10000000000\r\n\r\n")  # 10 GB announced, nothing sent
        reply = b""
        while b"}" not in reply:  # the whole JSON error, however the segments arrive
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    status_line, _, rest = reply.decode("latin-1").partition("\r\n")
    assert " 413 " in status_line
    assert "ASSISTANT_MAX_UPLOAD_MB" in rest and "10000.0 MB" in rest


def test_actual_size_over_the_limit_is_413_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = _doc_hashes(client)
    big = (b"A line of filler text for the size limit test.\n" * 3000)[: 120_000]  # > 52 KB limit
    body, content_type = _multipart([("big.txt", big)])

    def chunked() -> Iterator[bytes]:  # no Content-Length: only the real size can be checked
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = client.post("/api/documents", content=chunked(), headers={"Content-Type": content_type})
    assert r.status_code == 413
    assert "big.txt" in r.json()["error"] and "ASSISTANT_MAX_UPLOAD_MB" in r.json()["error"]
    assert _doc_hashes(client) == before and not (open_server.uploads / "big.txt").exists()


def test_delete_unknown_document_is_404(client: httpx.Client) -> None:
    r = client.delete("/api/documents/ffffffffffffffff")
    assert r.status_code == 404 and "GET /api/documents" in r.json()["error"]
    r = client.delete("/api/documents/README.md")  # ids only, never paths
    assert r.status_code == 404


# -- auth ---------------------------------------------------------------------------------------


def test_api_needs_the_key_when_one_is_set(auth_server: Served) -> None:
    url = auth_server.url
    r = httpx.post(url + "/api/ask", json={"question": "When was the lighthouse built?"})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in (f"Bearer {KEY}x", "Bearer", f"Basic {KEY}", KEY, f"Bearer {KEY[:-1]}"):
        r = httpx.get(url + "/api/documents", headers={"Authorization": header})
        assert r.status_code == 401, header
    for method, path in (("GET", "/api/search?q=x"), ("GET", "/api/documents"), ("DELETE", "/api/documents/x"),
                         ("POST", "/api/feedback"), ("POST", "/api/ask/stream"), ("GET", "/api/passage"),
                         ("GET", "/api/info")):
        assert httpx.request(method, url + path).status_code == 401, path
    r = httpx.post(url + "/api/ask", json={"question": "When was the lighthouse built?"},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and "1871" in r.json()["answer"]
    r = httpx.get(url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_auth_is_checked_before_reading_an_upload(auth_server: Served) -> None:
    before = _listing(httpx.Client(base_url=auth_server.url), {"Authorization": f"Bearer {KEY}"})["stats"]
    r = httpx.post(auth_server.url + "/api/documents", files=[("files", ("x.txt", b"sneaky", "text/plain"))])
    assert r.status_code == 401
    after = _listing(httpx.Client(base_url=auth_server.url), {"Authorization": f"Bearer {KEY}"})["stats"]
    assert after["documents"] == before["documents"] and not (auth_server.uploads / "x.txt").exists()


def test_open_server_needs_no_key(client: httpx.Client) -> None:
    assert client.get("/api/documents").status_code == 200


def test_exposing_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="ASSISTANT_API_KEY"):
        check_exposure(ServerConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="insecure-no-auth"):
        check_exposure(ServerConfig(host="192.168.1.20"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(ServerConfig(host=host))
    check_exposure(ServerConfig(host="0.0.0.0", api_key="k" * 20))
    check_exposure(ServerConfig(host="0.0.0.0", insecure_no_auth=True))


def test_cli_serve_refuses_a_public_host_without_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.cli import main

    monkeypatch.delenv("ASSISTANT_API_KEY", raising=False)
    started = time.perf_counter()
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--host", "0.0.0.0"]) == 2
    assert "ASSISTANT_API_KEY" in capsys.readouterr().err
    assert time.perf_counter() - started < 5 and not (tmp_path / "i").exists()  # refused before loading anything
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--frame-ancestors", "a;b"]) == 2
    assert "frame ancestor" in capsys.readouterr().err
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--allow-origin", "portal.example.com"]) == 2
    assert "https://" in capsys.readouterr().err


# -- CORS and framing ---------------------------------------------------------------------------


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(url + "/api/ask", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization, content-type"})


@pytest.mark.parametrize("server_name", ["open_server", "auth_server"])
def test_cors_preflight_allows_only_listed_origins(server_name: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server_name).url
    r = _preflight(url, PORTAL)
    assert r.status_code == 200  # no key needed for a preflight, even with auth on
    assert r.headers["access-control-allow-origin"] == PORTAL
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = _preflight(url, EVIL)
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_cors_headers_on_responses(open_server: Served, auth_server: Served) -> None:
    r = httpx.get(open_server.url + "/api/documents", headers={"Origin": PORTAL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PORTAL
    r = httpx.get(open_server.url + "/api/documents", headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = httpx.get(auth_server.url + "/api/documents", headers={"Origin": PORTAL})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PORTAL  # the portal can read why


def test_no_cors_without_configured_origins(tmp_path: Path, embedder: Embedder) -> None:
    service = AssistantService(Settings(index_dir=tmp_path / "index"), embedder=embedder)
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            wait_ready(url)
            assert _preflight(url, PORTAL).status_code == 400
            r = httpx.get(url + "/healthz", headers={"Origin": "http://127.0.0.1:9999"})
            assert "access-control-allow-origin" not in r.headers
    finally:
        service.close()


def test_frame_ancestors_header(open_server: Served, auth_server: Served) -> None:
    for url, expected in ((open_server.url, "frame-ancestors 'self'"),
                          (auth_server.url, f"frame-ancestors 'self' {PORTAL}")):
        for path in ("/embed", "/healthz", "/api/info"):
            r = httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"})
            csp = r.headers["content-security-policy"]
            assert csp.endswith(expected) or expected + ";" in csp, (path, csp)
            assert "x-frame-options" not in r.headers


# -- the embed page -----------------------------------------------------------------------------


def test_embed_page_is_self_contained_and_inserts_text_only(client: httpx.Client) -> None:
    r = client.get("/embed")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'data-auth="0"' in html and 'id="q"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load external assets"
    script = re.search(r"<script>(.*)</script>", html, re.S)
    assert script is not None
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script.group(1), sink
    assert "textContent" in script.group(1) and "createTextNode" in script.group(1)
    # The CSP allows exactly this script and style, by hash: no other script can run.
    csp = r.headers["content-security-policy"]
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_embed_page_knows_when_a_key_is_needed(auth_server: Served) -> None:
    r = httpx.get(auth_server.url + "/embed")  # the page itself is public; its API calls need the key
    assert r.status_code == 200 and 'data-auth="1"' in r.text


@contextlib.contextmanager
def _browser():  # type: ignore[no-untyped-def]
    """Headless Debian Chromium driven by Playwright (skips when either is missing)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def test_embed_page_in_a_browser_streams_cites_and_shows_markup_literally(open_server: Served) -> None:
    with _browser() as browser:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(open_server.url + "/embed", wait_until="domcontentloaded")
        page.fill("#q", "What is the codename of the Tuesday project?")
        page.press("#q", "Enter")
        page.wait_for_selector(".citations li button", timeout=30_000)
        answer = page.inner_text(".answer")
        assert "BLUEFINCH" in answer and '<img src=x onerror="window.__xss=1">' in answer
        assert page.evaluate("window.__xss") is None and not dialogs
        assert page.locator(".answer img, .answer script, #log img").count() == 0
        page.click(".citations li button")
        page.wait_for_selector(".preview mark")
        mark = page.inner_text(".preview mark")
        assert "BLUEFINCH" in mark and "<img" in mark
        assert page.inner_text(".preview").index(mark) > 0  # the quote sits inside its passage
        assert page.evaluate("window.__xss") is None and page.locator(".preview img").count() == 0
        page.click(".rate button[aria-label='helpful']")
        page.locator(".rate", has_text="Thanks for the feedback").wait_for()  # (CSP forbids eval'd waits)
    assert any(item.question == "What is the codename of the Tuesday project?" and item.rating == 1
               for item in open_server.service.feedback.items())


def test_embed_page_in_a_browser_takes_the_key_from_the_fragment(auth_server: Served) -> None:
    with _browser() as browser:
        page = browser.new_page()
        page.goto(auth_server.url + "/embed", wait_until="domcontentloaded")
        assert page.is_visible("#keyform")  # no key yet: the page asks for it
        page.fill("#q", "Anything?")
        page.press("#q", "Enter")
        assert "API key" in page.inner_text("#status") and page.locator(".turn").count() == 0
        page = browser.new_page()  # a new tab: empty sessionStorage
        page.goto(auth_server.url + f"/embed#key={KEY}", wait_until="domcontentloaded")
        assert "key=" not in page.url  # the key leaves the address bar
        assert not page.is_visible("#keyform")
        page.fill("#q", "How many varieties of apple does the orchard grow?")
        page.press("#q", "Enter")
        page.wait_for_selector(".citations li button", timeout=30_000)
        assert "fourteen" in page.inner_text(".answer")


# -- the Gradio UI (when assistant.ui.build_ui exists) -------------------------------------------


def test_root_redirects_to_the_ui_or_the_embed_page(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code in (302, 307)
    assert r.headers["location"] == ("/ui/" if _ui_available() else "/embed")


def test_ui_is_mounted_with_frame_ancestors(client: httpx.Client) -> None:
    if not _ui_available():
        pytest.skip("assistant.ui.build_ui does not exist yet")
    r = client.get("/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["content-security-policy"] == "frame-ancestors 'self'" and "x-frame-options" not in r.headers
    assert client.get("/ui/config").status_code == 200


def test_ui_requires_the_key_as_password(auth_server: Served) -> None:
    if not _ui_available():
        pytest.skip("assistant.ui.build_ui does not exist yet")
    with httpx.Client(base_url=auth_server.url) as c:
        assert c.get("/ui/config").status_code == 401
        assert '"auth_required":true' in c.get("/ui/").text.replace(" ", "")
        assert c.post("/ui/login", data={"username": "anyone", "password": "wrong"}).status_code == 400
        r = c.post("/ui/login", data={"username": "anyone", "password": KEY})
        assert r.status_code == 200 and r.json() == {"success": True}
        assert c.get("/ui/config").status_code == 200


# -- `assistant serve`, the real entry point ------------------------------------------------------


def test_cli_serve_prints_the_urls_and_serves(tmp_path: Path, docs_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("ASSISTANT_API_KEY", None)
    index = tmp_path / "index"
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "--index-dir", str(index), "serve",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Embed page:"):
                break
        output = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"API docs: {base}/docs" in output and f"Embed page: {base}/embed" in output, output
        assert ("Chat UI: " + base + "/ui/" in output) == _ui_available()
        assert "listening only on loopback" in output and "ASSISTANT_API_KEY" in output
        wait_ready(base, timeout=60)
        assert httpx.get(base + "/api/documents").json()["stats"]["documents"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, "".join(lines)
