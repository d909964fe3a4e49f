"""Any OpenAI-compatible /chat/completions endpoint (OpenAI, Azure OpenAI's v1 endpoint, vLLM, Ollama,
a llama.cpp server) through the `openai` client, which brings timeouts and retries with exponential
backoff on connection errors, 429 and 5xx. Registered as the chat backend "openai"."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from assistant import plugins
from assistant.llm.base import CallStats, ChatBackend, LLMError, Messages
from assistant.settings import Settings


@plugins.hookimpl
def register_chat_backends(register: Callable[[str, Callable[[Settings], ChatBackend]], None]) -> None:
    register("openai", OpenAIBackend.from_settings)


_CONTEXT_HINTS = ("context length", "context window", "context size", "context_length", "exceed_context",
                  "maximum context", "too many tokens", "prompt is too long")


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint; honours OPENAI_BASE_URL and OPENAI_API_KEY."""

    def __init__(self, model: str = "", base_url: str = "", api_key: str = "", timeout: float = 60.0,
                 max_retries: int = 2, name: str = "openai") -> None:
        self.name = name
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            if "api.openai.com" in self.base_url:
                raise LLMError(name, "config", "no API key: set OPENAI_API_KEY (or ASSISTANT_LLM_API_KEY, "
                                               "--llm-api-key), or point OPENAI_BASE_URL at your own endpoint")
            key = "no-key"  # self-hosted servers (llama.cpp, vLLM, Ollama) usually need none
        self.timeout = timeout
        self.max_retries = max_retries
        self._model = model
        self._model_lock = threading.Lock()
        import openai

        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        """The endpoint, key and model the settings name (each may fall back to OPENAI_* or the server)."""
        return cls(model=settings.llm_model, base_url=settings.llm_base_url, api_key=settings.llm_api_key,
                   timeout=settings.llm_timeout, max_retries=settings.llm_max_retries)

    @property
    def model(self) -> str:
        """The configured model, else the endpoint's first listed model (single-model servers)."""
        if not self._model:
            with self._model_lock:
                if not self._model:
                    try:
                        listed = [m.id for m in self._client.models.list().data]
                    except Exception as exc:
                        raise self._error(exc) from exc
                    if not listed:
                        raise LLMError(self.name, "config", f"{self.base_url} lists no models: set the model "
                                                            "(ASSISTANT_LLM_MODEL or --model)")
                    self._model = listed[0]
        return self._model

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None, stats: CallStats | None = None) -> str:
        stats = stats if stats is not None else CallStats()
        stats.model = self.model
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(model=stats.model, messages=messages,  # type: ignore[arg-type]
                                                            max_tokens=max_tokens, temperature=temperature,
                                                            **_stop(stop))
        except Exception as exc:
            raise self._error(exc) from exc
        stats.seconds = round(time.perf_counter() - started, 3)
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise LLMError(self.name, "malformed", f"malformed response from {self.base_url}: no choices")
        text = choices[0].message.content or ""
        stats.finish_reason = choices[0].finish_reason
        usage = getattr(response, "usage", None)
        if usage is not None:
            stats.prompt_tokens, stats.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        server = (getattr(response, "model_extra", None) or {}).get("timings") or {}
        if isinstance(server.get("predicted_per_second"), int | float):  # llama.cpp reports its decode rate
            stats.tokens_per_s = round(float(server["predicted_per_second"]), 1)
        elif stats.completion_tokens and stats.seconds > 0:  # otherwise end to end, prompt included
            stats.tokens_per_s = round(stats.completion_tokens / stats.seconds, 1)
        return text

    def stream(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None, stats: CallStats | None = None) -> Iterator[str]:
        stats = stats if stats is not None else CallStats()
        stats.model = self.model
        started = time.perf_counter()
        first: float | None = None
        pieces = 0
        try:
            response = self._client.chat.completions.create(  # type: ignore[call-overload]
                model=stats.model, messages=messages, max_tokens=max_tokens,
                temperature=temperature, stream=True, stream_options={"include_usage": True}, **_stop(stop))
        except Exception as exc:
            raise self._error(exc, streaming=True) from exc
        try:
            for chunk in response:
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    stats.prompt_tokens, stats.completion_tokens = usage.prompt_tokens, usage.completion_tokens
                if not getattr(chunk, "choices", None):
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    stats.finish_reason = choice.finish_reason
                piece = getattr(choice.delta, "content", None) if choice.delta is not None else None
                if piece:
                    if first is None:
                        first = time.perf_counter()
                        stats.ttft_ms = round((first - started) * 1000, 1)
                    pieces += 1
                    yield piece
        except LLMError:
            raise
        except Exception as exc:
            raise self._error(exc, streaming=True, midway=first is not None) from exc
        finally:
            response.close()  # also when the caller stops early: the server stops generating
        end = time.perf_counter()
        stats.seconds = round(end - started, 3)
        if first is None:
            raise LLMError(self.name, "malformed", f"malformed stream from {self.base_url}: it ended without any text")
        generated = stats.completion_tokens or pieces
        if generated > 1 and end > first:
            stats.tokens_per_s = round((generated - 1) / (end - first), 1)

    def _error(self, exc: Exception, streaming: bool = False, midway: bool = False) -> LLMError:
        import openai

        where = self.base_url
        retried = f" after {self.max_retries} retries" if self.max_retries else ""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(self.name, "timeout", f"timeout: no answer from {where} within {self.timeout:g} s{retried}")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({cause})" if cause else ""
            if midway:
                return LLMError(self.name, "malformed", f"malformed stream: the connection to {where} broke off{detail}")
            return LLMError(self.name, "connection", f"cannot connect to {where}: connection refused or host down{detail}")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return LLMError(self.name, "auth", f"{exc.status_code} wrong or missing API key: {where} refused it "
                                               "(check ASSISTANT_LLM_API_KEY / OPENAI_API_KEY)")
        if isinstance(exc, openai.RateLimitError):
            return LLMError(self.name, "rate_limit", f"429 rate limited by {where}{retried}")
        if isinstance(exc, openai.NotFoundError):
            return LLMError(self.name, "request", f"404 not found at {where}: check the model name "
                                                  f"({self._model or 'auto'}) and that the base URL ends in /v1")
        if isinstance(exc, openai.APIStatusError):
            message = _status_message(exc)
            if exc.status_code in (400, 413, 422) and any(h in message.lower() for h in _CONTEXT_HINTS):
                return LLMError(self.name, "context_overflow", f"context overflow: the prompt does not fit the "
                                                               f"model's context window ({message})")
            if exc.status_code >= 500:
                return LLMError(self.name, "server", f"server error {exc.status_code} from {where}{retried}: {message}")
            return LLMError(self.name, "request", f"request refused by {where} ({exc.status_code}): {message}")
        if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError, openai.APIError, ValueError,
                            KeyError, TypeError, AttributeError)):
            what = "stream" if streaming else "response"
            return LLMError(self.name, "malformed", f"malformed {what} from {where}: {type(exc).__name__}: {exc}")
        if isinstance(exc, openai.OpenAIError):
            return LLMError(self.name, "config", str(exc))
        return LLMError(self.name, "malformed", f"unexpected failure talking to {where}: {type(exc).__name__}: {exc}")


def _stop(stop: list[str] | None) -> dict[str, Any]:
    return {"stop": stop[:4]} if stop else {}  # OpenAI accepts at most 4 stop sequences


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))

