"""What every loader shares: the document type, the error, and the limits one file is read under.

`Limits` bound what a hostile file may expand to; `load()` puts them in force for the thread
(`applied`), and each loader reads them with `current_limits()` and counts against a `Budget`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOCK = 1 << 20  # bytes read at a time
MB = 1024 * 1024


class LoadError(Exception):
    """A file that cannot be indexed; the message names the problem and the fix."""


@dataclass(frozen=True)
class Limits:
    """What one file may expand to (defaults = the settings' defaults; `Limits.from_settings`)."""

    expanded_bytes: int = 500 * MB  # decompressed from a .docx's zip members, or from one PDF stream
    text_chars: int = 100 * MB  # characters of text extracted from one file
    zip_ratio: float = 100.0  # a zip member over 1 MB may expand at most this many times its compressed size
    html_elements: int = 1_000_000  # markup tags in one HTML page (it is parsed whole: ~400 bytes a tag)
    parse_seconds: float = 120.0  # parsing one .docx or .pdf

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(expanded_bytes=int(settings.max_expanded_mb * MB), text_chars=int(settings.max_text_mb * MB),
                   zip_ratio=float(settings.max_zip_ratio), html_elements=int(settings.max_html_elements),
                   parse_seconds=float(settings.max_parse_seconds))


_LIMITS: ContextVar[Limits | None] = ContextVar("loader_limits", default=None)


def current_limits() -> Limits:
    """The limits of the `load()` call running in this thread (the defaults outside one)."""
    return _LIMITS.get() or Limits()


def _mb(n: float) -> str:
    return f"{n / MB:g}"


class Budget:
    """Counts one file's extracted text and parsing time against its limits."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or current_limits()
        self.chars = 0
        self.deadline = time.monotonic() + self.limits.parse_seconds

    def add_text(self, n: int) -> None:
        self.chars += n
        if self.chars > self.limits.text_chars:
            raise LoadError(too_much_text(self.limits))

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LoadError(f"parsing took more than {self.limits.parse_seconds:g} s: refused "
                            "(ASSISTANT_MAX_PARSE_SECONDS; split the file, or raise the limit if it is genuine)")


def too_much_text(limits: Limits) -> str:
    return (f"expands to more than {_mb(limits.text_chars)} MB of text: refused (ASSISTANT_MAX_TEXT_MB; "
            "split the file, or raise the limit if it is genuine)")


def too_expanded(limits: Limits, what: str = "") -> str:
    return (f"{what + ' ' if what else ''}expands to more than {_mb(limits.expanded_bytes)} MB: refused "
            "(ASSISTANT_MAX_EXPANDED_MB; a compression bomb? raise the limit only if the file is genuine)")


@dataclass
class LoadedDocument:
    title: str
    segments: Iterable[str]  # concatenated, the document text that chunk offsets point into
    note: str = ""  # something the per-file report should say although the file was read


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 150 else line[:147] + "..."
    return fallback


@contextmanager
def applied(limits: Limits) -> Iterator[None]:
    """`limits` in force for the loader running in this thread (what `current_limits()` returns)."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)
