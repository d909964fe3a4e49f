"""Generative answers against a fake OpenAI-compatible server: the verifier on a deliberately wrong
answer, and every failure path (down, 401, 429, timeout, malformed stream, context overflow)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_llm import OUT_OF_RANGE, SUPPORTED, UNSUPPORTED, FakeLLM
from support import ingest_llm_docs, shared_embedder

from assistant.llm import LLMError, OpenAIBackend
from assistant.pipeline import Assistant
from assistant.service import AssistantService
from assistant.settings import Settings

QUESTION = "Who designed the new pier?"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_llm_docs(tmp_path_factory)


def _assistant(index: Path, url: str, **extra: object) -> Assistant:
    options: dict[str, object] = {"llm_max_retries": 0, "llm_timeout": 5.0, **extra}
    settings = Settings(index_dir=index, backend="openai", llm_base_url=url, llm_api_key="test-key",
                        **options)  # type: ignore[arg-type]
    return Assistant(settings, shared_embedder())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("policy", ["mark", "remove"])
def test_wrong_answer_unsupported_flagged_and_out_of_range_dropped(index: Path, fake: FakeLLM, policy: str) -> None:
    with _assistant(index, fake.url("wrong"), unsupported_policy=policy) as bot:
        result = bot.ask(QUESTION)
    assert result.backend == "openai" and result.model == "fake-model" and result.fallback_reason is None
    assert result.answer.startswith(SUPPORTED + ". [1]")
    # the out-of-range [9] is dropped, and its sentence (then uncited) is unsupported
    assert [d["n"] for d in result.dropped_citations] == [9]
    flagged = {u["sentence"]: u for u in result.unsupported}
    assert set(flagged) == {UNSUPPORTED + ".", OUT_OF_RANGE + "."}
    assert flagged[OUT_OF_RANGE + "."]["reason"] == "cites no existing source"
    assert "support" in flagged[UNSUPPORTED + "."]["reason"]
    if policy == "mark":
        assert UNSUPPORTED + ". [unverified]" in result.answer
        for u in result.unsupported:
            assert result.answer[u["start"] : u["end"]] == u["sentence"]
    else:
        assert UNSUPPORTED not in result.answer and OUT_OF_RANGE not in result.answer
    assert result.verified_answer() == SUPPORTED + ". [1]"
    # the one citation that reaches the user points at the exact supporting sentence
    assert len(result.citations) == 1
    c = result.citations[0]
    text = Path(c.source).read_text(encoding="utf-8")
    assert text[c.start : c.end] == c.quote and "Tove Rask" in c.quote
    assert set(map(int, re.findall(r"\[(\d+)\]", result.answer))) == {1}
    data = json.loads(json.dumps(result.to_dict()))  # what the API sends
    assert data["backend"] == "openai" and data["unsupported"] and data["dropped_citations"]
    assert data["debug"]["draft"].endswith("[9].") and data["timings"]["context_sources"] == 2


def test_streaming_wrong_answer_sends_tokens_then_the_verified_final(index: Path, fake: FakeLLM) -> None:
    service = AssistantService(Settings(index_dir=index, llm_base_url=fake.url("wrong"), llm_api_key="k",
                                        llm_max_retries=0, unsupported_policy="remove"), shared_embedder())
    try:
        assert service.answer_modes() == ["extractive", "openai"]
        events = list(service.ask_stream(QUESTION, backend="openai"))
    finally:
        service.close()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "final" and kinds.count("final") == 1 and kinds.count("token") > 3
    draft = "".join(e.text for e in events if e.kind == "token")
    assert "[9]" in draft
    result = events[-1].result
    assert result is not None and result.backend == "openai"
    assert result.revised and result.answer == SUPPORTED + ". [1]"
    assert "llm_ttft_ms" in result.timings and result.timings["context_sources"] >= 1


def test_nothing_supported_falls_back_to_extractive_or_abstains(index: Path, fake: FakeLLM) -> None:
    question = "How many loaves does the bakery sell on Saturdays?"  # the fake answers about the pier
    with _assistant(index, fake.url("wrong")) as bot:
        result = bot.ask(question)
    assert result.backend == "extractive" and "600" in result.answer
    assert "does not address the question" in (result.fallback_reason or "")  # true, but about the pier
    assert [u["reason"] for u in result.unsupported][-1] == "does not address the question"
    assert len(result.unsupported) == 3 and result.verified_answer() == result.answer
    with _assistant(index, fake.url("wrong"), fallback="abstain") as bot:
        result = bot.ask(question)
    assert result.abstained and result.backend == "openai" and not result.citations
    assert "abstained" in (result.fallback_reason or "")


@pytest.mark.parametrize("scenario, needle", [
    ("auth", "401 wrong or missing API key"),
    ("malformed", "malformed stream"),
    ("overflow", "context overflow"),
])
def test_failures_name_backend_and_problem_and_fall_back(index: Path, fake: FakeLLM, scenario: str,
                                                         needle: str) -> None:
    with _assistant(index, fake.url(scenario)) as bot:
        events = list(bot.ask_events(QUESTION))
    result = events[-1].result
    assert result is not None
    assert result.backend == "extractive" and "Tove Rask" in result.answer and result.citations
    assert result.fallback_reason and result.fallback_reason.startswith("openai backend: ") and needle in result.fallback_reason
    assert any(e.kind == "warning" and needle in e.text for e in events)
    assert any(needle in w for w in result.warnings)
    assert result.revised == (scenario == "malformed")  # a draft was streamed, then replaced
    if scenario == "overflow":  # retried once with fewer passages before giving up
        assert "retried with fewer passages" in " ".join(result.warnings)


def test_endpoint_down_is_a_clear_message_and_extractive_answer(index: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with _assistant(index, url) as bot:
        result = bot.ask(QUESTION)
    assert result.backend == "extractive" and "Tove Rask" in result.answer
    assert result.fallback_reason and "openai backend: cannot connect to " + url in result.fallback_reason
    with pytest.raises(LLMError, match="cannot connect") as info:
        OpenAIBackend("m", url, "k", timeout=2, max_retries=0).complete([{"role": "user", "content": "hi"}], max_tokens=5)
    assert info.value.kind == "connection" and info.value.backend == "openai"


def test_timeout_is_reported_within_the_limit(index: Path, fake: FakeLLM) -> None:
    backend = OpenAIBackend("m", fake.url("sleep"), "k", timeout=1.0, max_retries=0)
    started = time.perf_counter()
    with pytest.raises(LLMError, match=r"timeout: no answer from .* within 1 s") as info:
        list(backend.stream([{"role": "user", "content": "hi"}], max_tokens=5))
    assert info.value.kind == "timeout" and time.perf_counter() - started < 4
    with _assistant(index, fake.url("sleep"), llm_timeout=1.0) as bot:
        result = bot.ask(QUESTION)
    assert result.backend == "extractive" and "timeout" in (result.fallback_reason or "")


def test_rate_limit_is_retried_with_backoff(fake: FakeLLM) -> None:
    backend = OpenAIBackend("", fake.url("ratelimit"), "k", timeout=5, max_retries=2)
    assert backend.model == "fake-model"  # asked the endpoint: single-model servers need no name
    text = backend.complete([{"role": "user", "content": "q"}], max_tokens=20)
    assert SUPPORTED in text and fake.counts["ratelimit"] == 3


def test_unconfigured_backend_falls_back_with_a_message(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with Assistant(Settings(index_dir=index), shared_embedder()) as bot:
        assert bot.answer_backends() == ["extractive"]
        result = bot.ask(QUESTION, backend="openai")
        assert result.backend == "extractive" and "openai backend: no API key" in (result.fallback_reason or "")
        result = bot.ask(QUESTION, backend="local")
        assert "local backend: no GGUF file" in (result.fallback_reason or "")
        with pytest.raises(ValueError, match="unknown answer backend"):
            bot.ask(QUESTION, backend="gpt")


def test_cli_ask_with_an_llm_backend_and_the_renamed_embedding_flag(index: Path, fake: FakeLLM,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    common = ["--index-dir", str(index), "--embedding-model", "all-MiniLM-L6-v2"]
    assert main(["ask", QUESTION, *common, "--backend", "openai", "--llm-base-url", fake.url("wrong"),
                 "--llm-api-key", "k", "--model", "fake-model"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(SUPPORTED + ". [1]") and "[unverified]" in out
    assert "not supported by the sources they cite (marked [unverified]):" in out
    assert "(answered by openai (fake-model))" in out
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    assert main(["ask", QUESTION, *common, "--backend", "openai", "--llm-base-url", url, "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning: openai backend: cannot connect" in captured.err
    data = json.loads(captured.out)
    assert data["backend"] == "extractive" and data["fallback_reason"].startswith("openai backend: cannot connect")
    assert "test-key" not in repr(Settings(llm_api_key="test-key"))  # the key is never printed


def test_the_api_stream_carries_llm_tokens_then_the_verified_result(index: Path, fake: FakeLLM) -> None:
    from fastapi.testclient import TestClient

    from assistant.web.app import create_app
    from assistant.web.config import ServerConfig

    service = AssistantService(Settings(index_dir=index, llm_base_url=fake.url("wrong"), llm_api_key="k",
                                        llm_max_retries=0), shared_embedder())
    try:
        with TestClient(create_app(service, ServerConfig(mount_ui=False))) as client:
            deadline = time.monotonic() + 60
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)  # warming up
            assert client.get("/api/info").json()["answer_modes"] == ["extractive", "openai"]
            response = client.post("/api/ask/stream", json={"question": QUESTION, "backend": "openai"})
            assert response.status_code == 200
            events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1][6:]))
                      for block in response.text.strip().split("\n\n")]
            body = client.post("/api/ask", json={"question": QUESTION, "backend": "openai"}).json()
    finally:
        service.close()
    tokens = [data["text"] for kind, data in events if kind == "token"]
    assert len(tokens) > 3 and "".join(tokens).endswith("[9].")
    kind, final = events[-1]
    assert kind == "final" and final["backend"] == "openai" and final["revised"] is True
    assert final["answer"].startswith(SUPPORTED + ". [1]") and final["dropped_citations"][0]["n"] == 9
    assert body["backend"] == "openai" and body["answer"] == final["answer"]


def test_the_api_stream_names_a_down_backend_in_a_warning_and_falls_back(index: Path) -> None:
    from fastapi.testclient import TestClient

    from assistant.web.app import create_app
    from assistant.web.config import ServerConfig

    url = f"http://127.0.0.1:{_closed_port()}/v1"
    service = AssistantService(Settings(index_dir=index, llm_base_url=url, llm_api_key="k", llm_max_retries=0),
                               shared_embedder())
    try:
        with TestClient(create_app(service, ServerConfig(mount_ui=False))) as client:
            deadline = time.monotonic() + 60
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            response = client.post("/api/ask/stream", json={"question": QUESTION, "backend": "openai"})
    finally:
        service.close()
    events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1][6:]))
              for block in response.text.strip().split("\n\n")]
    warnings = [data["text"] for kind, data in events if kind == "warning"]
    assert warnings and "openai backend: cannot connect" in warnings[0]
    kind, final = events[-1]
    assert kind == "final" and final["backend"] == "extractive" and "Tove Rask" in final["answer"]
    assert final["fallback_reason"].startswith("openai backend: cannot connect")


def test_a_broken_user_template_is_a_warning_not_a_crash(index: Path, fake: FakeLLM, tmp_path: Path) -> None:
    (tmp_path / "answer.j2").write_text("{% block user %}{{ question | nosuchfilter }}{% endblock %}")
    with _assistant(index, fake.url("wrong"), prompts_dir=str(tmp_path)) as bot:
        result = bot.ask(QUESTION)
    assert result.backend == "extractive" and "Tove Rask" in result.answer
    assert "openai backend: prompt template" in (result.fallback_reason or "") and "nosuchfilter" in result.fallback_reason
