"""The one citation-preview rule, shared by the chat UI (`assistant.ui.render`) and /embed
(through `POST /api/preview`).

Rule: a citation's preview is the cited span `[start, end)` of its document's text with up to
`PREVIEW_CONTEXT` characters either side, read from the index. The span must still hold the
citation's quote exactly (no search for it elsewhere); if it does not (the document changed) or
the text cannot be read, the preview is the quote alone. Without access to the index (rendering
a stored result), the same window is cut from the retrieved passage the citation came from
(same chunk id). The caller shows all three parts as text, the quote highlighted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PREVIEW_CONTEXT = 240  # characters of document text shown either side of a quote

DocumentText = Callable[[str, int, int], "str | None"]
log = logging.getLogger(__name__)


def _window(text: str | None, text_start: int, start: int, end: int, quote: str) -> tuple[str, str, str] | None:
    """(before, quote, after) from `text` (which begins at document offset `text_start`), or None
    when the span [start, end) of it does not hold `quote`."""
    if text is None:
        return None
    lo, hi = start - text_start, end - text_start
    if not (0 <= lo <= hi <= len(text)) or (quote and text[lo:hi] != quote):
        return None
    return text[max(0, lo - PREVIEW_CONTEXT) : lo], text[lo:hi], text[hi : hi + PREVIEW_CONTEXT]


def document_preview(document_text: DocumentText, doc_id: str, start: int, end: int,
                     quote: str) -> tuple[str, str, str] | None:
    """The preview read from the index, or None (span moved, or text unreadable)."""
    lo = max(0, start - PREVIEW_CONTEXT)
    try:
        around = document_text(doc_id, lo, end + PREVIEW_CONTEXT)
    except Exception:  # a preview must never break the answer
        log.debug("no preview text for %s [%s, %s)", doc_id, start, end, exc_info=True)
        around = None
    return _window(around, lo, start, end, quote)


def quote_context(citation: Mapping[str, Any], passages: Sequence[Mapping[str, Any]],
                  document_text: DocumentText | None = None) -> tuple[str, str, str]:
    """(text before, quoted span, text after) for a citation's preview, by the rule above."""
    start, end = int(citation.get("start", 0)), int(citation.get("end", 0))
    quote = str(citation.get("quote", ""))
    found: tuple[str, str, str] | None = None
    if document_text is not None:
        if citation.get("doc_id"):
            found = document_preview(document_text, str(citation["doc_id"]), start, end, quote)
    else:
        for p in passages:
            if p.get("chunk_id") == citation.get("chunk_id"):
                found = _window(str(p.get("text", "")), int(p.get("start", 0)), start, end, quote)
                break
    return found or ("", quote, "")
