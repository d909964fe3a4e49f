"""Turn a file into document text, or a LoadError that says what is wrong and what to do.

Plain text is streamed: `LoadedDocument.segments` yields pieces whose concatenation is the
document text, so a 50 MB file is never held twice in memory. Other formats are parsed whole.
Loaders register by file suffix through the plugin hook `register_loaders` (`assistant.plugins`);
the built-in ones below are registered that way too, so a plugin adds a format without a core edit.

Hostile files are bounded while they are read (`Limits`, from the settings `max_expanded_mb`,
`max_text_mb`, `max_zip_ratio`, `max_html_elements`, `max_parse_seconds`): a .docx is checked
member by member (declared sizes and compression ratio) and its XML is parsed as a stream,
paragraph by paragraph, so a zip bomb is refused before it is held in memory; PDF streams are
decoded under a size cap and pages counted as they are extracted; text is counted as it streams.
Every refusal is a LoadError that says how far the file expands and which setting to raise.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import assistant.plugins as plugins
from assistant.loaders.base import BLOCK, Limits, LoadedDocument, LoadError, applied, content_hash, current_limits
from assistant.loaders.docx import load_docx
from assistant.loaders.html import load_html
from assistant.loaders.pdf import load_pdf
from assistant.loaders.text import load_text

__all__ = ["BLOCK", "Limits", "LoadError", "LoadedDocument", "content_hash", "current_limits", "is_supported", "load",
           "supported_suffixes", "text_of"]


@plugins.hookimpl
def register_loaders(register: Callable[[str, Callable[[Path], LoadedDocument]], None]) -> None:
    """The built-in formats."""
    for suffix in (".txt", ".text", ".md", ".markdown"):
        register(suffix, load_text)
    register(".html", load_html)
    register(".htm", load_html)
    register(".pdf", load_pdf)
    register(".docx", load_docx)


def supported_suffixes() -> list[str]:
    """Every suffix some registered loader reads, sorted."""
    return sorted(plugins.loaders().names())


def is_supported(path: Path) -> bool:
    return plugins.loaders().find(path.suffix.lower()) is not None


def load(path: Path, limits: Limits | None = None) -> LoadedDocument:
    """The loader for the file's suffix, run under `limits` (default: `Limits()`, the settings' defaults)."""
    registry = plugins.loaders()
    loader = registry.find(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}; supported: "
                        f"{', '.join(supported_suffixes())} ({registry.install_hint})")
    with applied(limits or Limits()):
        try:
            return loader(path)
        except MemoryError as exc:
            raise LoadError("ran out of memory reading it: refused (lower ASSISTANT_MAX_TEXT_MB / "
                            "ASSISTANT_MAX_EXPANDED_MB, or split the file)") from exc


def text_of(doc: LoadedDocument) -> str:
    """The whole text (for small documents and tests)."""
    buffer = io.StringIO()
    for piece in doc.segments:
        buffer.write(piece)
    return buffer.getvalue()
