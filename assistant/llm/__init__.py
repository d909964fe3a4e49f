"""Chat LLM backends behind one small protocol, so the answerer never sees a vendor SDK.

- `base`: the `ChatBackend` protocol, `CallStats`, `LLMError`.
- `openai_backend.OpenAIBackend` ("openai"): any OpenAI-compatible /chat/completions endpoint.
- `local.LocalLlamaBackend` ("local"): a GGUF file served by llama.cpp in this process.

Chat backends register by name through the plugin hook `register_chat_backends`
(`assistant.plugins`), the two above included. "Answer backends" are what `ask` accepts: "extractive"
(no LLM) plus every chat backend. `get_backend(name, settings)` builds one, `configured_backends(settings)`
lists those these settings make usable.

Every failure becomes an `LLMError` whose message names the backend and the problem (connection
refused, wrong key, timeout, malformed stream, context overflow, ...): callers show it and fall back.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from assistant import plugins
from assistant.llm.base import CallStats, ChatBackend, LLMError, Messages
from assistant.llm.local import LocalLlamaBackend, resolve_gguf, stop_local_server, wait_healthy
from assistant.llm.openai_backend import OpenAIBackend
from assistant.settings import Settings

__all__ = ["CallStats", "ChatBackend", "LLMError", "LocalLlamaBackend", "Messages", "OpenAIBackend", "answer_backends",
           "configured_backends", "get_backend", "resolve_gguf", "stop_local_server", "wait_healthy"]

EXTRACTIVE = "extractive"  # the answer backend that needs no LLM

_cache: dict[tuple[Any, ...], ChatBackend] = {}
_cache_lock = threading.Lock()


def answer_backends() -> list[str]:
    """What `ask` accepts as its backend: "extractive", then every registered chat backend."""
    return [EXTRACTIVE, *plugins.chat_backends().names()]


def configured_backends(settings: Settings) -> list[str]:
    """LLM backends these settings make usable: `openai` once an endpoint or key is known,
    `local` once the model names an existing GGUF file (or a registered one), and every other
    registered chat backend (a plugin's factory raises `LLMError` when its own setup is missing)."""
    names = []
    if settings.llm_base_url or os.environ.get("OPENAI_BASE_URL") or settings.llm_api_key or os.environ.get("OPENAI_API_KEY"):
        names.append("openai")
    if settings.llm_model:
        try:
            resolve_gguf(settings.llm_model)
            names.append("local")
        except LLMError:
            pass
    return names + [name for name in plugins.chat_backends().names() if name not in ("openai", "local")]


def get_backend(name: str, settings: Settings) -> ChatBackend:
    """The backend `name` for these settings, built once and reused (its HTTP client, its server)."""
    registry = plugins.chat_backends()
    factory = registry.find(name)
    if factory is None:
        raise ValueError(f"unknown LLM backend {name!r}; use one of {', '.join(registry.names())}, or "
                         f"{registry.install_hint}")
    key = (name, settings.llm_model, settings.llm_base_url, settings.llm_api_key, settings.llm_timeout,
           settings.llm_max_retries, settings.llm_threads, settings.llm_context_tokens,
           os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY"))
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = factory(settings)
            _cache[key] = backend
        return backend
