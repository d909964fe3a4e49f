"""The JSON API over real uvicorn on loopback: health, OpenAPI, asking, SSE streaming, search,
passages and feedback, against the open server of conftest.py (three small documents)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import DOCS, UPLOAD_LIMIT_MB, Served, sse

from assistant.service import StreamEvent

# -- health and basics -------------------------------------------------------------------------


def test_healthz_reports_ready_with_counts(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["documents"] == len(DOCS) and body["chunks"] >= len(DOCS)


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


# -- asking ------------------------------------------------------------------------------------


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
        for event in sse(r):
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
        events = list(sse(r))
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


# -- search, passages, feedback ----------------------------------------------------------------


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
