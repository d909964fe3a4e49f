"""What every chat backend shares: the protocol the answerer calls, per-call stats, the error type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

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

