"""Hostile request bodies (issue 12, problems 3 and 4): no 500 anywhere, and the server stays up.

A real server (uvicorn on loopback, the real model and index) gets lone surrogates, NULs, huge
and negative integers, NaN, deep nesting, wrong types and invalid UTF-8 in every field of every
JSON route, the query routes and Gradio's /ask. Every answer must be 2xx or 4xx JSON (never 500),
and the next request on the same keep-alive connection must still be answered.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.ingest import Ingestor
from assistant.service import AssistantService, InputError, check_question
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig

SEED = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[str, AssistantService]]:
    folder = tmp_path_factory.mktemp("hostile_api")
    docs = folder / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.\n")
    (docs / "bakery.txt").write_text("The Lindqvist bakery on Canal Street sells 600 loaves on Saturdays.\n")
    settings = Settings(index_dir=folder / "index", max_upload_mb=0.05)
    assert not Ingestor(settings, embedder=embedder).ingest_paths([docs], progress=False).failed
    service = AssistantService(settings, embedder=embedder)
    try:
        with ServerThread(create_app(service, ServerConfig(host="127.0.0.1", port=0))) as url:
            wait_ready(url)
            yield url, service
    finally:
        service.close()


@pytest.fixture(scope="module")
def client(server: tuple[str, AssistantService]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=60) as c:  # one keep-alive connection for all requests
        yield c


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_RAW = [  # JSON text for one value
    json.dumps("abc \ud800 def"), json.dumps("\udfff"), json.dumps("tail \ud83d"), json.dumps("a\x00b"),
    json.dumps("\x00"), "10000000000000000000", "-10000000000000000000000000000000", str(2**63), str(-(2**63) - 1),
    "1e309", "-1e309", "NaN", "Infinity", "0", "-1", "1.5", "true", "false", "null", "[]", "{}", '""',
    json.dumps(" " * 10), json.dumps("x" * 5000), json.dumps(["\ud800"]), json.dumps([1, 2, 3]),
    json.dumps({"\ud800": "\ud800"}), _deep(3000), '{"a":' * 2000 + "1" + "}" * 2000, json.dumps("é 漢字 🙂"),
    json.dumps(["q"] * 60), json.dumps("\u202e\u200b\ufeff"),
]

ASK_FIELDS = {"question": json.dumps("When does the ferry leave?"), "history": "[]", "top_k": "3", "backend": "null"}
FEEDBACK_FIELDS = {"rating": "1", "question": json.dumps("When does the ferry leave?"), "answer": json.dumps("07:40"),
                   "comment": '""', "history": "[]", "citations": "[]", "abstained": "false"}


def _body(fields: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}"


def _bodies(fields: dict[str, str], rng: random.Random, n_random: int) -> Iterator[str]:
    for name in fields:  # each field gets each hostile value once
        for raw in HOSTILE_RAW:
            yield _body({**fields, name: raw})
    for _ in range(n_random):  # then random mixes: several fields hostile at once, extra fields, odd shapes
        mixed = {k: (rng.choice(HOSTILE_RAW) if rng.random() < 0.5 else v) for k, v in fields.items()}
        if rng.random() < 0.2:
            mixed[rng.choice(["\ud800", "extra", "__proto__"])] = rng.choice(HOSTILE_RAW)
        yield _body(mixed)
    yield from [rng.choice(HOSTILE_RAW), "", "{", '{"question": "unterminated', "\ufeff{}", "[" * 100]


def _check(client: httpx.Client, response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert "error" in response.json(), f"{what}: {response.text[:300]}"
    alive = client.get("/healthz")  # the same keep-alive connection still works
    assert alive.status_code == 200, f"after {what}: {alive.status_code}"


def test_hostile_json_bodies_never_give_500(client: httpx.Client) -> None:
    rng = random.Random(SEED)
    sent = 0
    headers = {"Content-Type": "application/json"}
    for path, fields in (("/api/ask", ASK_FIELDS), ("/api/ask/stream", ASK_FIELDS), ("/api/feedback", FEEDBACK_FIELDS)):
        for body in _bodies(fields, rng, 25 if path != "/api/feedback" else 10):
            with client.stream("POST", path, content=body.encode("utf-8", "surrogatepass"), headers=headers) as r:
                r.read()
            _check(client, r, f"POST {path} {body[:120]!r}")
            if path.endswith("/stream") and r.status_code == 200:
                assert "event: final" in r.text or "event: error" in r.text, r.text[-300:]
            sent += 1
    # Invalid UTF-8 bytes in the body.
    for raw in (b'{"question": "\xff\xfe"}', b'{"question": "\xed\xa0\x80"}', b"\x00" * 100, b'{"question": "a\xc3"}'):
        _check(client, client.post("/api/ask", content=raw, headers=headers), f"POST /api/ask {raw!r}")
        sent += 1
    assert sent > 300


def test_hostile_query_parameters_never_give_500(client: httpx.Client) -> None:
    rng = random.Random(SEED + 1)
    values = ["%ED%A0%80", "%00", "10000000000000000000", "-1", "0", "1e9", "NaN", "%FF%FE", "x" * 5000, "",
              "99999999999999999999999999", "%F0%9F%99%82", "[]", "a%0Ab", "-9223372036854775809"]
    paths = [
        "/api/search?q={v}", "/api/search?q=ferry&top_k={v}", "/api/search?q=ferry&mode={v}",
        "/api/passage?doc_id={v}&start=0&end=10", "/api/passage?doc_id=x&start={v}&end=10",
        "/api/passage?doc_id=x&start=0&end={v}", "/api/documents/{v}",
    ]
    for template in paths:
        for v in values:
            url = template.format(v=v)
            method = "DELETE" if url.startswith("/api/documents/") else "GET"
            _check(client, client.request(method, url), f"{method} {url[:120]}")
    for _ in range(20):
        v = rng.choice(values)
        _check(client, client.get(f"/api/passage?doc_id={rng.choice(values)}&start={v}&end={rng.choice(values)}"),
               "GET /api/passage (random)")


def test_huge_offsets_in_passage_are_a_4xx_and_the_connection_survives(client: httpx.Client,
                                                                      server: tuple[str, AssistantService]) -> None:
    doc_id = server[1].documents()[0].id
    for start, end in ((10**19, 10**19 + 1), (0, 10**19), (2**63 - 1, 2**63), (2**62, 2**62 + 5)):
        r = client.get("/api/passage", params={"doc_id": doc_id, "start": start, "end": end})
        assert r.status_code in (400, 404, 422), (start, end, r.status_code, r.text)
        assert client.get("/api/passage", params={"doc_id": doc_id, "start": 0, "end": 10}).status_code == 200
    with pytest.raises(InputError, match="offset"):
        server[1].document_text(doc_id, 0, 10**19)


def test_lone_surrogates_are_a_422_naming_the_field_in_every_json_route(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for path, body in (("/api/ask", '{"question": "abc \\ud800 def"}'),
                       ("/api/ask/stream", '{"question": "abc \\ud800 def"}'),
                       ("/api/ask", '{"question": "ok?", "history": ["x \\udc00"]}'),
                       ("/api/feedback", '{"rating": 1, "question": "\\ud800"}'),
                       ("/api/feedback", '{"rating": 1, "question": "q", "history": ["\\ud800"]}')):
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert "invalid Unicode" in r.json()["error"], r.text
        assert "\\ud800" not in r.text.replace("\\\\ud800", "")  # the input is not echoed back


def test_gradio_ask_applies_the_same_limits(client: httpx.Client) -> None:
    cases: list[tuple[list[Any], str]] = [
        (["abc \ud800 def", [], None, None], "invalid Unicode"),
        (["x" * 5000, [], None, None], "at most 4,000"),
        (["When does the ferry leave?", ["q"] * 10_000, None, None], "at most 50"),
        (["When does the ferry leave?", [], 10**9, None], "top_k"),
        (["When does the ferry leave?", [], -1, None], "top_k"),
        (["a\x00b", [], None, None], "NUL"),
    ]
    for data, needle in cases:
        body = json.dumps({"data": data})  # ensure_ascii: a lone surrogate travels as \ud800
        r = client.post("/ui/gradio_api/call/ask", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            event_id = r.json()["event_id"]
            result = client.get(f"/ui/gradio_api/call/ask/{event_id}")
            assert result.status_code == 200, result.text
            assert "event: error" in result.text and needle in result.text, (needle, result.text[:400])
        assert client.get("/healthz").status_code == 200
    r = client.post("/ui/gradio_api/call/ask", json={"data": ["When does the ferry leave?", [], 3, None]})
    final = client.get(f"/ui/gradio_api/call/ask/{r.json()['event_id']}").text
    assert "event: complete" in final and "07:40" in final, final[:400]


def test_check_question_is_the_one_place_for_the_limits() -> None:
    assert check_question("ok?", ["a"], 5) == ("ok?", ["a"], 5)
    for args, needle in ((("\ud800",), "invalid Unicode"), (("a" * 4001,), "at most 4,000"), (("  ",), "empty"),
                         (("q", ["h"] * 51), "at most 50"), (("q", None, 0), "top_k"), (("q", None, 51), "top_k"),
                         (("q", None, 10**19), "top_k"), (("q", None, True), "top_k"), (("q", None, 2.5), "top_k"),
                         (("q", "not a list"), "history"), (("q", [None]), "history[0]"), ((None,), "string")):
        with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            check_question(*args)


def test_saved_index_is_untouched(server: tuple[str, AssistantService], client: httpx.Client) -> None:
    """Nothing above changed the documents (the hostile routes only read, or were refused)."""
    names = sorted(Path(d.source).name for d in server[1].documents())
    assert names == ["bakery.txt", "ferry.txt"]
