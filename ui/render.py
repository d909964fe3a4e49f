"""HTML for the chat UI, built by hand so every piece of document-derived text is escaped.

Document text, titles, file names, questions and answers are untrusted: they go through `esc()`,
which turns `& < > " '` and the characters that Markdown, LaTeX or template engines act on
(`[ ] ( ) $ { } \\` * _ | ~ ! #`) into numeric character references. The browser shows them as the
same characters, but nothing downstream can read them as a tag, a link or a formula.
The only markup in the output is the fixed markup written in this module.

Citations: an answer's `[n]` becomes `<a class="da-cite" href="#da-cite-TURN-n">`; the answer
message carries, under its text, one `<details id="da-cite-TURN-n">` per citation with the title,
file, character span and the passage with the quoted span in `<mark>`. A click on `[n]` opens
that `<details>` (a small delegated click handler, static/cite.js; without it the link still jumps
there and the summary opens it). The passage shown is `quote_context`: the one preview rule,
shared with /embed (assistant/web/preview.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from assistant.types import file_name
from assistant.web.preview import DocumentText, quote_context

# One pass: HTML's special characters, then those that mean something to Markdown, LaTeX
# auto-render or JS/Handlebars templates, all as numeric character references.
_ESCAPES = str.maketrans({ch: f"&#{ord(ch)};" for ch in "&<>\"'[]()$`{}\\*_|~!#"})
_CITE_MARK = re.compile(r"\[(\d+)\]")


def esc(text: object) -> str:
    """Untrusted text as inert HTML: escaped, with Markdown/LaTeX/template characters neutralized."""
    return ("" if text is None else str(text)).translate(_ESCAPES)


def _attr_id(*parts: object) -> str:
    """An id made only of safe characters (turn numbers, citation numbers, chunk ids)."""
    return "-".join(re.sub(r"[^A-Za-z0-9_-]", "_", str(p)) for p in parts)


def cite_id(turn: int, n: int) -> str:
    return _attr_id("da-cite", turn, n)


# -- chat messages ----------------------------------------------------------------------------


def render_question(question: str) -> str:
    return f'<div class="da-question">{esc(question)}</div>'


def render_streaming(text: str) -> str:
    """The answer while it streams: plain escaped text and a cursor."""
    return (f'<div class="da-msg da-streaming"><div class="da-text">{esc(text)}'
            '<span class="da-cursor" aria-hidden="true">&#9612;</span></div></div>')


def render_error(message: str) -> str:
    return ('<div class="da-msg da-error" role="alert"><div class="da-notice-title">Something went wrong</div>'
            f'<div class="da-text">{esc(message)}</div></div>')


def backend_of(result: Mapping[str, Any]) -> str:
    return str(result.get("backend") or "extractive")


def _marked_answer(turn: int, answer: str, numbers: set[int], unsupported: Sequence[Any]) -> str:
    """The linked answer with each sentence the verifier rejected (`answer[start:end]`) styled as unverified."""
    spans = sorted((int(u["start"]), int(u["end"])) for u in unsupported
                   if isinstance(u, Mapping) and isinstance(u.get("start"), int) and isinstance(u.get("end"), int)
                   and 0 <= u["start"] < u["end"] <= len(answer))
    out: list[str] = []
    pos = 0
    for start, end in spans:
        if start < pos:
            continue
        out.append(_linked_answer(turn, answer[pos:start], numbers))
        out.append('<span class="da-unverified" title="Not supported by the passage it cites">'
                   f"{_linked_answer(turn, answer[start:end], numbers)}</span>")
        pos = end
    out.append(_linked_answer(turn, answer[pos:], numbers))
    return "".join(out)


def _notes(result: Mapping[str, Any]) -> str:
    """LLM problems and fallbacks, named with the backend, so the user knows why the answer looks as it does."""
    messages = [str(w) for w in result.get("warnings") or [] if w]
    reason = result.get("fallback_reason")
    if reason and str(reason) not in messages:
        messages.append(str(reason))
    if not messages:
        return ""
    items = "".join(f"<li>{esc(m)}</li>" for m in messages)
    return f'<div class="da-warn" role="status"><ul>{items}</ul></div>'


def _linked_answer(turn: int, answer: str, numbers: set[int]) -> str:
    """Escaped answer text with each known `[n]` as a link to its citation."""
    out: list[str] = []
    pos = 0
    for match in _CITE_MARK.finditer(answer):
        n = int(match.group(1))
        if n not in numbers:
            continue
        out.append(esc(answer[pos : match.start()]))
        out.append(f'<a class="da-cite" href="#{cite_id(turn, n)}" title="Show source {n}" '
                   f'aria-label="Show source {n}">&#91;{n}&#93;</a>')
        pos = match.end()
    out.append(esc(answer[pos:]))
    return "".join(out)


def _passage_html(before: str, quote: str, after: str) -> str:
    lead = "&#8230;" if before and not before[:1].isupper() else ""
    tail = "&#8230;" if after.strip() and not after.rstrip().endswith((".", "!", "?", "\u201d", '"')) else ""
    return (f'<div class="da-passage">{lead}{esc(before)}<mark class="da-quote">{esc(quote)}</mark>'
            f'{esc(after)}{tail}</div>')


def render_citation(turn: int, citation: Mapping[str, Any], passages: Sequence[Mapping[str, Any]],
                    document_text: DocumentText | None = None, open_: bool = False) -> str:
    n = int(citation.get("n", 0))
    before, quote, after = quote_context(citation, passages, document_text)
    title = str(citation.get("title") or file_name(citation.get("source")) or "untitled")
    return (
        f'<details class="da-source" id="{cite_id(turn, n)}"{" open" if open_ else ""}>'
        f'<summary><span class="da-n">&#91;{n}&#93;</span> <span class="da-title">{esc(title)}</span></summary>'
        f'<div class="da-meta"><span class="da-file">{esc(file_name(citation.get("source")))}</span>'
        f' &#183; quote at characters {int(citation.get("start", 0))}&#8211;{int(citation.get("end", 0))}'
        f' &#183; chunk {esc(citation.get("chunk_id"))}</div>'
        f"{_passage_html(before, quote, after)}</details>"
    )


def _footer(result: Mapping[str, Any]) -> str:
    bits = [f'answered by <span class="da-backend">{esc(backend_of(result))}</span>']
    confidence = result.get("confidence")
    if isinstance(confidence, int | float):
        bits.append(f"confidence {float(confidence):.2f}")
    timings = result.get("timings")
    if isinstance(timings, Mapping) and isinstance(timings.get("total_ms"), int | float):
        bits.append(f"{float(timings['total_ms']):.0f} ms")
    line = " &#183; ".join(bits)
    standalone, question = result.get("standalone_question"), result.get("question")
    if standalone and standalone != question:
        line += f'<div class="da-readas">read as: {esc(standalone)}</div>'
    return f'<div class="da-footer">{line}</div>'


def render_answer(turn: int, result: Mapping[str, Any], document_text: DocumentText | None = None) -> str:
    """The finished assistant message: answer with citation links and sources, or an abstention notice."""
    answer = str(result.get("answer") or "")
    citations = [c for c in result.get("citations") or [] if isinstance(c, Mapping)]
    passages = [p for p in result.get("passages") or [] if isinstance(p, Mapping)]
    if result.get("abstained"):
        return ('<div class="da-msg da-abstain" role="note">'
                '<div class="da-notice-title"><span aria-hidden="true">&#9888;</span> No answer in your documents</div>'
                f'<div class="da-text">{esc(answer)}</div>{_notes(result)}'
                '<div class="da-hint">The closest passages are listed under Sources. Try rephrasing, or add documents '
                "that cover this in the Documents tab.</div>"
                f"{_footer(result)}</div>")
    numbers = {int(c.get("n", 0)) for c in citations}
    sources = "".join(render_citation(turn, c, passages, document_text) for c in citations)
    block = (f'<div class="da-sources"><div class="da-sources-label">Sources</div>{sources}</div>'
             if sources else "")
    unsupported = [u for u in result.get("unsupported") or [] if isinstance(u, Mapping)]
    return (f'<div class="da-msg da-answer"><div class="da-text">{_marked_answer(turn, answer, numbers, unsupported)}'
            f"</div>{_notes(result)}{block}{_footer(result)}</div>")


# -- side panel --------------------------------------------------------------------------------


def render_sources_panel(turn: int | None, result: Mapping[str, Any] | None) -> str:
    """The passages retrieved for the latest answer; cited ones first, their quotes marked."""
    if result is None or turn is None:
        return ('<div class="da-panel"><div class="da-panel-title">Sources</div>'
                '<p class="da-muted">Ask a question: the passages it was answered from appear here.</p></div>')
    passages = [p for p in result.get("passages") or [] if isinstance(p, Mapping)]
    citations = [c for c in result.get("citations") or [] if isinstance(c, Mapping)]
    by_chunk: dict[Any, list[Mapping[str, Any]]] = {}
    for c in citations:
        by_chunk.setdefault(c.get("chunk_id"), []).append(c)
    cited = [p for p in passages if p.get("chunk_id") in by_chunk]
    others = [p for p in passages if p.get("chunk_id") not in by_chunk]
    rank = {id(p): i for i, p in enumerate(passages, start=1)}
    items: list[str] = []
    for p in cited + others:
        marks = by_chunk.get(p.get("chunk_id"), [])
        tag = "".join(f'<span class="da-n">&#91;{int(c.get("n", 0))}&#93;</span>' for c in marks)
        body = _marked_passage(p, marks)
        score = p.get("score")
        score_txt = f" &#183; score {float(score):.3f}" if isinstance(score, int | float) else ""
        snippet = "" if marks else f'<div class="da-snippet">{esc(_snippet(str(p.get("text", ""))))}</div>'
        items.append(
            f'<details class="da-source{" da-cited" if marks else ""}" id="{_attr_id("da-src", turn, p.get("chunk_id"))}"'
            f'{" open" if marks else ""}><summary>{tag}<span class="da-rank">#{rank[id(p)]}</span> '
            f'<span class="da-title">{esc(p.get("title") or "untitled")}</span>{snippet}</summary>'
            f'<div class="da-meta"><span class="da-file">{esc(file_name(p.get("source")))}</span>'
            f' &#183; passage at characters {int(p.get("start", 0))}&#8211;{int(p.get("end", 0))}{score_txt}'
            f"</div>{body}</details>"
        )
    heading = "Passages the answer cites, then the other passages retrieved" if cited else "Closest passages retrieved"
    if not items:
        items.append('<p class="da-muted">No passages were retrieved: the index may be empty.</p>')
    return (f'<div class="da-panel"><div class="da-panel-title">Sources</div>'
            f'<div class="da-muted">{esc(heading)} for: <q>{esc(result.get("question"))}</q></div>'
            f'{"".join(items)}</div>')


def _snippet(text: str, limit: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "\u2026"


def _marked_passage(passage: Mapping[str, Any], citations: Iterable[Mapping[str, Any]]) -> str:
    text, p_start = str(passage.get("text", "")), int(passage.get("start", 0))
    spans = sorted((int(c.get("start", 0)) - p_start, int(c.get("end", 0)) - p_start) for c in citations)
    out: list[str] = []
    pos = 0
    for lo, hi in spans:
        lo, hi = max(lo, pos), min(hi, len(text))
        if lo >= hi:
            continue
        out.append(esc(text[pos:lo]) + f'<mark class="da-quote">{esc(text[lo:hi])}</mark>')
        pos = hi
    out.append(esc(text[pos:]))
    return f'<div class="da-passage">{"".join(out)}</div>'


# -- documents tab ------------------------------------------------------------------------------


def _get(record: Any, name: str, default: Any = "") -> Any:
    return record.get(name, default) if isinstance(record, Mapping) else getattr(record, name, default)


def render_stats(stats: Mapping[str, Any]) -> str:
    docs, chunks = int(stats.get("documents") or 0), int(stats.get("chunks") or 0)
    model = stats.get("model") or "?"
    dim = stats.get("dim")
    return (f'<div class="da-stats"><span><b>{docs}</b> document{"" if docs == 1 else "s"}</span>'
            f'<span><b>{chunks}</b> chunk{"" if chunks == 1 else "s"}</span>'
            f'<span>model <b>{esc(model)}</b>{f" ({int(dim)}-d)" if dim else ""}</span></div>')


def render_docs_heading(stats: Mapping[str, Any]) -> str:
    return f'<div class="da-docs-heading"><h2>Indexed documents</h2>{render_stats(stats)}</div>'


def render_documents(documents: Sequence[Any]) -> str:
    if not documents:
        return '<div class="da-panel"><p class="da-muted">No documents indexed yet: upload some above.</p></div>'
    rows = []
    for d in documents:
        updated = _get(d, "updated_at", 0) or 0
        when = time.strftime("%Y-%m-%d", time.localtime(float(updated))) if updated else ""
        rows.append(
            f"<tr><td class=\"da-title\">{esc(_get(d, 'title') or 'untitled')}</td>"
            f"<td class=\"da-file\">{esc(file_name(_get(d, 'source')))}</td>"
            f"<td class=\"da-num\">{int(_get(d, 'n_chunks', 0) or 0)}</td>"
            f"<td class=\"da-num\">{_size(int(_get(d, 'size', 0) or 0))}</td>"
            f"<td class=\"da-nowrap\">{esc(when)}</td><td class=\"da-id\">{esc(_get(d, 'id'))}</td></tr>"
        )
    return ('<div class="da-table-wrap"><table class="da-table" id="da-documents"><thead><tr><th>Title</th><th>File</th>'
            '<th>Chunks</th><th>Size</th><th>Updated</th><th>ID</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


_STATUS_CLASS = {"added": "ok", "updated": "ok", "unchanged": "same", "removed": "same",
                 "skipped": "warn", "failed": "bad", "refused": "bad"}


def render_ingest_rows(rows: Sequence[Mapping[str, Any]], seconds: float | None = None) -> str:
    """Per-file upload outcome: file, status, chunks, reason (a refused or failed file says why)."""
    if not rows:
        return '<div class="da-ingest"><p class="da-muted">Choose one or more files, then press Add to index.</p></div>'
    lines = []
    for r in rows:
        status = str(r.get("status", ""))
        lines.append(
            f'<tr class="da-status-{_STATUS_CLASS.get(status, "same")}"><td class="da-file">{esc(r.get("file"))}</td>'
            f'<td><span class="da-badge">{esc(status)}</span></td><td class="da-num">{int(r.get("chunks") or 0)}</td>'
            f'<td class="da-reason">{esc(r.get("reason") or "")}</td></tr>'
        )
    bad = sum(1 for r in rows if r.get("status") in ("failed", "refused"))
    summary = f"{len(rows) - bad} of {len(rows)} file{'' if len(rows) == 1 else 's'} indexed"
    if bad:
        summary += f", {bad} not indexed (see the reason)"
    if seconds is not None:
        summary += f" in {seconds:.1f} s"
    return (f'<div class="da-ingest" id="da-ingest-report"><div class="da-ingest-summary">{esc(summary)}</div>'
            '<table class="da-table"><thead><tr><th>File</th><th>Status</th><th>Chunks</th><th>Reason</th></tr></thead>'
            f'<tbody>{"".join(lines)}</tbody></table></div>')


def render_notice(message: str, kind: str = "info") -> str:
    kind = kind if kind in {"info", "ok", "bad"} else "info"
    return f'<div class="da-notice da-notice-{kind}">{esc(message)}</div>'


# -- example questions ----------------------------------------------------------------------------

_USABLE_TITLE = re.compile(r"^[\w\s'\u2019\u2018\-\u2013\u2014:,.&?!%/\"\u201c\u201d]+$")
GENERIC_EXAMPLES = ("What are these documents about?",)


def example_questions(titles: Iterable[str], limit: int = 3) -> list[str]:
    """Questions derived from document titles ("What is <title> about?"), plus a generic one.

    Titles with markup-like characters or very short ones are skipped; long titles are cut at a
    word boundary. Nothing here knows which corpus is loaded.
    """
    out: list[str] = []
    for raw in titles:
        title = " ".join(str(raw or "").split()).rstrip(".:;,!?")
        if len(title) < 4 or not _USABLE_TITLE.match(title) or not re.search(r"[A-Za-z]{3}", title):
            continue
        if len(title) > 70:
            title = title[:70].rsplit(" ", 1)[0].rstrip(" ,;:\u2014\u2013-") + "\u2026"
        question = f"What is \u201c{title}\u201d about?"
        if question not in out:
            out.append(question)
        if len(out) >= limit:
            break
    return out + [q for q in GENERIC_EXAMPLES if q not in out][: max(0, limit + 1 - len(out))]
