"""Answer units: the pieces of a chunk an answer can quote (sentences, list items, table rows).

One function, `split_units(text, offset)`, used at ingest (each unit gets its own vector, stored
with its span) and by the answerer (which scores units), so both always agree on the spans.
A unit's `start`/`end` are character offsets into the document's text (`offset` is where `text`
starts in it); `display` is what an answer shows (markup removed); `context` is what the unit
needs to be understood (a table row's header row, the nearest heading).

Markdown structure (from .md files and from the HTML loader, which writes Markdown-like text):
- "heading": an ATX line (`# ...` to `###### ...`) or a one-line paragraph underlined with
  `===`/`---` (setext; the underline is not part of the span). Never an answer on its own; its
  `display` is the heading text, its `context` the enclosing (higher-level) heading.
- "list_item": a `- `, `* `, `+ `, `1. ` or `1) ` item with its continuation lines, `display`
  without the bullet. An item of more than 2 sentences is split into its sentences (each of
  kind "list_item"; the first one's span starts at the bullet).
- "table_row": a `| a | b |` row. The separator row `|---|` is never a unit and the header row
  (the row right above the separator) is not one either: each body row gets `context` = the
  header cells joined by " | " and `display` = "header1: cell1; header2: cell2" (empty cells
  left out; without a header in the chunk, e.g. a chunk that starts mid-table, the cells joined
  by "; " and an empty context).
- "sentence": everything else, split as plain text always was (`assistant.text.split_sentences`;
  a sentence ending in ':' joins the next sentence of running text). Plain text without
  Markdown gives the same units as before.
- Fenced code blocks (``` or ~~~) and thematic breaks (`---`, `***`) give no units.
- `context` of every non-heading unit other than a table row with a header: the text of the
  nearest heading above it in the chunk ("" if none).
- `display` drops inline Markdown: `**bold**`, `*em*`, `_em_`, `~~del~~`, code backticks,
  `[text](url)` and `![alt](url)` (the text stays), backslash escapes, heading hashes and
  leading `>` quote marks. It is "" when that changes nothing (then `shown()` is the text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest

from assistant.text import split_sentences
from assistant.types import Span

KINDS = ("sentence", "heading", "list_item", "table_row")


@dataclass(frozen=True)
class Unit:
    start: int
    end: int
    text: str  # the exact slice of the document's text: text == document_text[start:end]
    kind: str = "sentence"  # one of KINDS
    display: str = ""  # shown in answers: markup removed ("" means: the text, whitespace collapsed)
    context: str = ""  # a table row's header row, or the nearest heading above the unit

    def shown(self) -> str:
        return self.display or " ".join(self.text.split())


# -- block syntax -------------------------------------------------------------------------

_FENCE = re.compile(r"\s*(`{3,}|~{3,})[ \t]*([^`\s][^`]*?)?[ \t]*$")
_ATX = re.compile(r"[ \t]{0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"[ \t]{0,3}(?:={2,}|-{2,})[ \t]*$")
_BREAK = re.compile(r"[ \t]{0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_BULLET = re.compile(r"[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+(?=\S)")
_EMPTY_BULLET = re.compile(r"[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]*$")
_TABLE_SEP = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
# A line break inside running text before inline markup (`code`, *em*, [link]) is a soft wrap
# when the line does not end a sentence (text.split_sentences only knows lower-case wraps).
_SOFT_BREAK = re.compile(r"(?<![.!?:;\u2026\"'\u201d])\r?\n(?=[`*_\[])")
_TASK_BOX = re.compile(r"\[[ xX]\][ \t]+")

# -- inline syntax (display only) -----------------------------------------------------------

_MARKUP = re.compile(r"[*_`\[\]<>\\~]")
_QUOTE_MARK = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()\s]*(?:\([^()\s]*\)[^()\s]*)*(?:[ \t]+(?:\"[^\"]*\"|'[^']*'))?\)")
_LINK = re.compile(r"\[([^\[\]]*)\]\([^()\s]*(?:\([^()\s]*\)[^()\s]*)*(?:[ \t]+(?:\"[^\"]*\"|'[^']*'))?\)")
_REF_LINK = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])|(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")


_HELD = re.compile("[\ue000-\ue07f]")  # an escaped character, held out of the markup rules


def _emphasis_free(text: str) -> str:
    text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EM.sub(lambda m: m.group(1) or m.group(2), text)
    text = _STRIKE.sub(r"\1", text)
    return _HELD.sub(lambda m: chr(ord(m.group()) - 0xE000), text)


def plain(text: str) -> str:
    """`text` without inline Markdown, whitespace collapsed (what an answer shows)."""
    if _MARKUP.search(text):
        text = _QUOTE_MARK.sub("", text)
        if "\\" in text and not _HELD.search(text):
            text = _ESCAPE.sub(lambda m: chr(0xE000 + ord(m.group(1))), text)
        text = _IMAGE.sub(r"\1", text)
        text = _LINK.sub(r"\1", text)
        text = _REF_LINK.sub(r"\1", text)
        text = _AUTOLINK.sub(r"\1", text)
        parts: list[str] = []
        last = 0
        for match in _CODE_SPAN.finditer(text):  # code keeps its characters (and backslashes) verbatim
            parts.append(_emphasis_free(text[last : match.start()]))
            code = match.group(2).strip() or match.group(2)
            parts.append(_HELD.sub(lambda m: "\\" + chr(ord(m.group()) - 0xE000), code))
            last = match.end()
        parts.append(_emphasis_free(text[last:]))
        text = "".join(parts)
    return " ".join(text.split())


def _display(text: str) -> str:
    shown = plain(text)
    return "" if shown == " ".join(text.split()) else shown


def _cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [plain(cell.replace("\\|", "|")) for cell in _CELL_SPLIT.split(row)]


# -- the splitter ---------------------------------------------------------------------------


@dataclass
class _Sentence:
    """Running text awaiting the ':' join (structural units are final as built)."""

    span: Span
    context: str


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line, end before the line break (and a '\\r' before it)."""
    out: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while pos <= n:
        nl = text.find("\n", pos)
        end = n if nl == -1 else nl
        stop = end - 1 if end > pos and text[end - 1] == "\r" else end
        out.append((pos, stop))
        if nl == -1:
            break
        pos = nl + 1
    return out


def _fence_closes(line: str, opener: tuple[str, int]) -> bool:
    m = _FENCE.match(line)
    return m is not None and m.group(2) is None and m.group(1)[0] == opener[0] and len(m.group(1)) >= opener[1]


def _starts_in_code(fences: list[tuple[str, int, bool]], prose: list[int]) -> bool:
    """Does the chunk begin inside a code block (its opening fence in an earlier chunk)?

    Only an opening fence can carry an info string (```python): choose the reading in which
    more fences with one open a block. On a tie, the reading in which more lines outside code
    look like prose or Markdown (`prose[k]`: such lines before fence k, the last entry after the
    last fence); a tie again reads the chunk as starting outside code."""

    def score(inside: bool) -> int:
        opener = (fences[0][0], 3) if inside else None
        points = 0
        for char, length, info in fences:
            if opener is None:
                opener = (char, length)
                points += info
            elif not info and char == opener[0] and length >= opener[1]:
                opener = None
            elif info:
                points -= 1  # an info string inside code: this reading is unlikely
        return points

    if fences[0][2]:
        return False
    inside, outside = score(True), score(False)
    if inside != outside:
        return inside > outside
    return sum(prose[1::2]) > sum(prose[0::2])


_PROSE_LINE = re.compile(r"[ \t]*(?:#{1,6} |\||[-*+] |\d{1,3}[.)] |>)|.*[.!?\u2026][\"')\]\u201d\u2019]*[ \t]*$")


@lru_cache(maxsize=4096)
def split_units(text: str, offset: int = 0) -> tuple[Unit, ...]:
    """Units of `text` in order (cached: the same chunks come back question after question).

    A sentence ending in ':' joins the sentence after it (a lead-in belongs to what it introduces),
    when both are running text (not a heading, list item or table row).
    """
    lines = _lines(text)
    fences: list[tuple[str, int, bool]] = []
    prose = [0]  # lines that look like prose or Markdown, between fences
    if "```" in text or "~~~" in text:
        for s, e in lines:
            m = _FENCE.match(text, s, e)
            if m is not None:
                fences.append((m.group(1)[0], len(m.group(1)), m.group(2) is not None))
                prose.append(0)
            elif _PROSE_LINE.match(text, s, e):
                prose[-1] += 1
    code: tuple[str, int] | None = (fences[0][0], 3) if fences and _starts_in_code(fences, prose) else None

    seq: list[_Sentence | Unit | None] = []  # None: a skipped block (code, break) that ends running text
    headings: list[tuple[int, str]] = []  # (level, display) of the enclosing headings
    para: tuple[int, int] | None = None  # running text: first line's start, last line's end
    para_lines = 0
    item: tuple[int, int, int] | None = None  # list item: bullet start, content start, end
    header: list[str] | None = None  # the current table's header cells
    in_table = False

    def heading_context() -> str:
        return headings[-1][1] if headings else ""

    def flush_para() -> None:
        nonlocal para, para_lines
        if para is not None:
            s, e = para
            ctx = heading_context()
            body = text[s:e]
            if "\n" in body:
                body = _SOFT_BREAK.sub(lambda m: " " * len(m.group()), body)  # same length: offsets hold
            seq.extend(_Sentence(span, ctx) for span in split_sentences(body, offset + s))
            para, para_lines = None, 0

    def flush_item() -> None:
        nonlocal item
        if item is None:
            return
        b, c, e = item
        item = None
        ctx = heading_context()
        body = text[c:e].replace("\r", " ").replace("\n", " ")  # same length: offsets hold
        sentences = split_sentences(body, offset + c)
        if len(sentences) <= 2:
            shown = _TASK_BOX.sub("", plain(text[c:e]), count=1)
            seq.append(Unit(offset + b, offset + e, text[b:e], "list_item", shown, ctx))
            return
        for k, sentence in enumerate(_joined(sentences)):
            s = sentence.start - offset
            if k == 0:
                s = b
            piece = text[s : sentence.end - offset]
            shown = plain(text[sentence.start - offset : sentence.end - offset])
            seq.append(Unit(offset + s, sentence.end, piece, "list_item", shown, ctx))

    def flush() -> None:
        flush_para()
        flush_item()

    def add_heading(s: int, e: int, level: int, shown: str) -> None:
        flush()
        if not shown:
            return
        while headings and headings[-1][0] >= level:
            headings.pop()
        seq.append(Unit(offset + s, offset + e, text[s:e], "heading", shown, heading_context()))
        headings.append((level, shown))

    count = len(lines)
    i = 0
    while i < count:
        s, e = lines[i]
        line = text[s:e]
        i += 1
        if code is not None:
            if _fence_closes(line, code):
                code = None
            continue
        stripped = line.strip()
        if not stripped:
            flush()
            header, in_table = None, False
            continue
        first = stripped[0]
        fence = _FENCE.match(line) if first in "`~" else None
        if fence is not None:
            flush()
            header, in_table = None, False
            code = (fence.group(1)[0], len(fence.group(1)))
            seq.append(None)
            continue
        lead = len(line) - len(line.lstrip())
        if first == "#":
            atx = _ATX.match(line)
            if atx is not None:
                header, in_table = None, False
                title = atx.group(2) or ""
                shown = "" if not title.strip("#") else plain(title)  # "# #": an empty heading
                add_heading(s + lead, s + len(line.rstrip()), len(atx.group(1)), shown)
                continue
        if first in "=-" and para is not None and para_lines == 1 and item is None and _SETEXT.match(line):
            ps, pe = para
            para, para_lines = None, 0
            title = text[ps:pe]
            ps, pe = ps + len(title) - len(title.lstrip()), ps + len(title.rstrip())
            add_heading(ps, pe, 1 if first == "=" else 2, plain(text[ps:pe]))
            continue
        if first in "-*_" and _BREAK.match(line):
            flush()
            header, in_table = None, False
            seq.append(None)
            continue
        if "|" in stripped:
            nxt = text[lines[i][0] : lines[i][1]] if i < count else ""
            starts_header = "|" in nxt and _TABLE_SEP.match(nxt) is not None and "-" in nxt
            if starts_header and (first == "|" or not in_table):
                flush()
                header, in_table = _cells(line), True
                i += 1  # the separator row
                continue
            if first == "|" or in_table:
                flush()
                if first == "|" and _TABLE_SEP.match(line) and "-" in line:
                    in_table = True  # a separator row (its header is in an earlier chunk)
                    continue
                in_table = True
                cells = _cells(line)
                if header is not None:
                    pairs = [f"{h}: {c}" if h else c for h, c in zip_longest(header, cells, fillvalue="") if c]
                    shown, ctx = "; ".join(pairs), " | ".join(header)
                else:
                    shown, ctx = "; ".join(c for c in cells if c), ""
                if shown:
                    seq.append(Unit(offset + s + lead, offset + s + len(line.rstrip()), stripped, "table_row",
                                    shown, ctx))
                continue
        in_table, header = False, None
        bullet = _BULLET.match(line) if (first in "-*+" or first.isdigit()) else None
        if bullet is not None:
            flush()
            item = (s + lead, s + bullet.end(), s + len(line.rstrip()))
            continue
        if (first in "-*+" or first.isdigit()) and _EMPTY_BULLET.match(line):
            flush()  # an empty list item
            continue
        if item is not None:
            item = (item[0], item[1], s + len(line.rstrip()))  # a continuation line
            continue
        if para is None:
            para = (s, e)
        else:
            para = (para[0], e)
        para_lines += 1
    flush()
    return tuple(_units(text, offset, seq))


def _joined(spans: list[Span]) -> list[Span]:
    """Sentences with a lead-in ending in ':' joined to the sentence after it (offsets kept)."""
    out: list[Span] = []
    i = 0
    while i < len(spans):
        span = spans[i]
        if span.text.rstrip().endswith(":") and i + 1 < len(spans):
            span = Span(span.start, spans[i + 1].end, "")
            i += 1
        out.append(span)
        i += 1
    return out


def _units(text: str, offset: int, seq: list[_Sentence | Unit | None]) -> list[Unit]:
    units: list[Unit] = []
    i = 0
    while i < len(seq):
        entry = seq[i]
        i += 1
        if entry is None:
            continue
        if isinstance(entry, Unit):
            units.append(entry)
            continue
        start, end = entry.span.start, entry.span.end
        nxt = seq[i] if i < len(seq) else None
        if entry.span.text.rstrip().endswith(":") and isinstance(nxt, _Sentence):
            end = nxt.span.end
            i += 1
        piece = text[start - offset : end - offset]
        units.append(Unit(start, end, piece, "sentence", _display(piece), entry.context))
    return units
