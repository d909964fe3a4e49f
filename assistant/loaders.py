"""Turn a file into document text, or a LoadError that says what is wrong and what to do.

Plain text is streamed: `LoadedDocument.segments` yields pieces whose concatenation is the
document text, so a 50 MB file is never held twice in memory. Other formats are parsed whole.
Loaders register by file suffix in `LOADERS`; add one there to support a new format.

Hostile files are bounded while they are read (`Limits`, from the settings `max_expanded_mb`,
`max_text_mb`, `max_zip_ratio`, `max_html_elements`, `max_parse_seconds`): a .docx is checked
member by member (declared sizes and compression ratio) and its XML is parsed as a stream,
paragraph by paragraph, so a zip bomb is refused before it is held in memory; PDF streams are
decoded under a size cap and pages counted as they are extracted; text is counted as it streams.
Every refusal is a LoadError that says how far the file expands and which setting to raise.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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


class _Budget:
    """Counts one file's extracted text and parsing time against its limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.chars = 0
        self.deadline = time.monotonic() + limits.parse_seconds

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


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 150 else line[:147] + "..."
    return fallback


# -- plain text ---------------------------------------------------------------------------


def _detect_text_encoding(path: Path) -> str:
    """UTF-8 if the whole file decodes as UTF-8 (checked streaming), else a detected encoding."""
    size = path.stat().st_size
    if size == 0:
        raise LoadError("empty file: there is no text to index")
    decoder = codecs.getincrementaldecoder("utf-8")()
    limits = current_limits()
    chars = 0  # counted during this pass, so a text over the limit is refused before it is chunked
    with open(path, "rb") as handle:
        first = True
        try:
            while block := handle.read(BLOCK):
                if first and b"\x00" in block[:8192] and not block.startswith((b"\xff\xfe", b"\xfe\xff")):
                    wide = _bomless_wide_encoding(block)  # UTF-16/32 text without a BOM has NUL bytes too
                    if wide is None:
                        raise LoadError(
                            "binary content (NUL bytes) in a text file: it is not text; "
                            "convert it to .txt/.md/.html/.pdf/.docx or remove it"
                        )
                    if size > (4 if "32" in wide else 2) * limits.text_chars:
                        raise LoadError(too_much_text(limits))
                    return wide
                first = False
                chars += len(decoder.decode(block))
                if chars > limits.text_chars:
                    raise LoadError(too_much_text(limits))
            decoder.decode(b"", final=True)
            return "utf-8-sig"
        except UnicodeDecodeError:
            pass
        handle.seek(0)
        sample = handle.read(4 * BLOCK)
    encoding = _guess_encoding(sample)
    if encoding is None:
        raise LoadError("undecodable bytes: not UTF-8 and no text encoding fits; re-save the file as UTF-8")
    if size > (4 if "32" in encoding else 2 if "16" in encoding else 1) * limits.text_chars:
        raise LoadError(too_much_text(limits))
    return encoding


def _bomless_wide_encoding(head: bytes) -> str | None:
    """UTF-32 or UTF-16 (big or little endian) when the file's start plainly is such text without
    a byte-order mark: it decodes strictly, holds no NUL character, nearly all of it is printable
    and a tenth or more is ASCII/Latin-1 (where its NUL bytes come from). Binary data decodes to
    NULs, control characters, broken surrogates or scattered code points instead."""
    sample = head[:65536]
    for encoding, unit in (("utf-32-be", 4), ("utf-32-le", 4), ("utf-16-be", 2), ("utf-16-le", 2)):
        try:  # incremental, not final: the sample may end inside a character
            text = codecs.getincrementaldecoder(encoding)().decode(sample[: len(sample) - len(sample) % unit])
        except UnicodeDecodeError:
            continue
        if len(text) < 16 or "\x00" in text:  # too short to tell text from data
            continue
        printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f")
        latin = sum(1 for ch in text if ord(ch) < 0x100)  # the NUL bytes: ASCII/Latin-1 characters
        if printable >= 0.98 * len(text) and latin >= 0.1 * len(text):
            return encoding
    return None


def _guess_encoding(raw: bytes) -> str | None:
    """charset-normalizer's best guess, except that cp1252 wins ties.

    Western text with a few accents decodes without chaos and as the same language under
    cp1252, cp1250, cp1257 or cp775, and the detector's pick among those is arbitrary
    ("crème" became "crčme"). cp1252 is by far the most common of them.
    """
    from charset_normalizer import from_bytes

    matches = from_bytes(raw)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if (match.chaos == best.chaos and match.language == best.language
                and "cp1252" in match.could_be_from_charset):
            return "cp1252"
    return best.encoding


def _stream_text(path: Path, encoding: str, limits: Limits | None = None) -> Iterator[str]:
    budget = _Budget(limits or current_limits())
    try:
        with open(path, encoding=encoding, newline="", errors="strict") as handle:
            while piece := handle.read(BLOCK):
                budget.add_text(len(piece))
                yield piece
    except UnicodeDecodeError as exc:
        raise LoadError(f"undecodable bytes at offset {exc.start} as {encoding}; re-save the file as UTF-8") from exc


def load_text(path: Path) -> LoadedDocument:
    encoding = _detect_text_encoding(path)
    with open(path, encoding=encoding, newline="", errors="replace") as handle:
        head = handle.read(4096)
    if not head.strip():
        # Whitespace-only head: check the whole file before calling it empty.
        if not any(piece.strip() for piece in _stream_text(path, encoding)):
            raise LoadError("empty file: only whitespace, there is no text to index")
    title = _title_from_text(head, path.stem)
    limits = current_limits()
    if path.stat().st_size > 4 * limits.text_chars:  # at most 4 bytes a character: over, whatever it decodes to
        raise LoadError(too_much_text(limits))
    return LoadedDocument(title=title, segments=_stream_text(path, encoding, limits))


# -- HTML ---------------------------------------------------------------------------------

_BLOCK_TAGS = "p,div,h1,h2,h3,h4,h5,h6,li,br,tr,td,th,section,article,blockquote,pre,header,footer,dd,dt"


def load_html(path: Path) -> LoadedDocument:
    """Visible text as Markdown-like plain text, so answer units see the page's structure:
    h1-h6 become `#` lines, li `- ` (or `1. `) items indented by nesting, table rows
    `| a | b |` lines with a `|---|` separator after the first row, pre a ``` fenced block;
    other block elements end a line, and headings, lists, tables and pre stand between blank
    lines. Only text nodes' (entity-decoded) text is written: never markup."""
    from selectolax.lexbor import LexborHTMLParser, LexborNode

    raw = path.read_bytes()
    if not raw.strip():
        raise LoadError("empty file: there is no text to index")
    _check_html(raw, current_limits())
    tree = LexborHTMLParser(raw.decode("utf-8", errors="replace") if _is_utf8(raw) else _decode_guess(raw))
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    tree.strip_tags(["script", "style", "noscript", "template", "svg", "iframe", "object"])

    blocks = set(_BLOCK_TAGS.split(",")) | {"main", "nav", "aside", "figure", "figcaption", "address", "dl",
                                            "details", "summary", "caption", "form", "fieldset", "legend"}
    lines: list[str] = []  # output lines; "" is a blank line
    inline: list[str] = []  # text of the line being built
    bullet = ""  # what the next written line starts with (a list item's marker)
    lists: list[list[int]] = []  # open lists: [ordered, items so far]

    def squeeze(text: str) -> str:
        return " ".join(text.split())

    def blank() -> None:
        if lines and lines[-1]:
            lines.append("")

    def end_line() -> None:
        nonlocal bullet
        text = squeeze("".join(inline))
        inline.clear()
        if text:
            lines.append(bullet + text)
            bullet = ""

    def table(node: LexborNode) -> None:
        rows = []
        for tr in node.css("tr"):
            cells = [squeeze(cell.text(deep=True, separator=" ")).replace("|", "\\|") for cell in tr.css("th,td")]
            if any(cells):
                rows.append(cells)
        if not rows:
            return
        blank()
        width = max(len(row) for row in rows)
        for k, row in enumerate(rows):
            lines.append("| " + " | ".join(row + [""] * (width - len(row))) + " |")
            if k == 0:
                lines.append("|" + "---|" * width)
        blank()

    def pre(node: LexborNode) -> None:
        body = [line.rstrip() for line in node.text(deep=True).replace("\r\n", "\n").split("\n")]
        while body and not body[0]:
            body.pop(0)
        while body and not body[-1]:
            body.pop()
        if not body:
            return
        fence = "```"
        while any(line.lstrip().startswith(fence) for line in body):
            fence += "`"
        blank()
        lines.extend([fence, *body, fence])
        blank()

    def enter(node: LexborNode) -> bool:
        """Write what `node` opens; True to walk its children."""
        nonlocal bullet
        tag = node.tag
        if tag == "-text":
            inline.append(node.text(deep=False))
            return False
        if tag is None or tag.startswith("-"):  # comments and the like
            return False
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            end_line()
            text = squeeze(node.text(deep=True, separator=" "))
            if text:
                blank()
                lines.append("#" * int(tag[1]) + " " + text)
                blank()
            return False
        if tag == "table":
            end_line()
            table(node)
            return False
        if tag == "pre":
            end_line()
            pre(node)
            return False
        if tag in ("ul", "ol", "menu"):
            end_line()
            if not lists:
                blank()
            lists.append([tag == "ol", 0])
            return True
        if tag == "li":
            end_line()
            if lists:
                lists[-1][1] += 1
                ordered, count = lists[-1]
                bullet = "  " * (len(lists) - 1) + (f"{count}. " if ordered else "- ")
            else:
                bullet = "- "
            return True
        if tag in ("br", "hr") or tag in blocks:
            end_line()
            if tag == "hr":
                blank()
        return True

    def leave(node: LexborNode) -> None:
        tag = node.tag
        if tag in ("ul", "ol", "menu"):
            end_line()
            if lists:
                lists.pop()
            if not lists:
                blank()
        elif tag in blocks or tag == "li":
            end_line()

    root = tree.body or tree.root
    stack: list[tuple[LexborNode, bool]] = [(root, False)] if root is not None else []
    while stack:  # depth-first without recursion: deeply nested pages must not overflow the stack
        node, leaving = stack.pop()
        if leaving:
            leave(node)
            continue
        if enter(node):
            stack.append((node, True))
            children = []
            child = node.child
            while child is not None:
                children.append(child)
                child = child.next
            stack.extend((child, False) for child in reversed(children))
    end_line()
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        raise LoadError("no visible text in this HTML page")
    if not title:
        heading = tree.css_first("h1")
        title = heading.text(strip=True) if heading else _title_from_text(text, path.stem)
    return LoadedDocument(title=title, segments=[text])


_TAG = re.compile(rb"<[A-Za-z!/?]")


def _check_html(raw: bytes, limits: Limits) -> None:
    """An HTML page is parsed whole: bound its text and its tags (the parsed tree's size) first."""
    if len(raw) > 4 * limits.text_chars:
        raise LoadError(too_much_text(limits))
    if raw.count(b"<") <= limits.html_elements:
        return  # fewer '<' than the limit: fewer tags too
    tags = 0
    for _ in _TAG.finditer(raw):  # counted one match at a time, stopping past the limit
        tags += 1
        if tags > limits.html_elements:
            break
    if tags > limits.html_elements:
        raise LoadError(f"has more than {limits.html_elements:,} HTML tags: refused "
                        "(ASSISTANT_MAX_HTML_ELEMENTS; split the page, or raise the limit if it is genuine)")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _decode_guess(raw: bytes) -> str:
    encoding = _guess_encoding(raw)
    return raw.decode(encoding or "utf-8", errors="replace")


# -- PDF ----------------------------------------------------------------------------------


def load_pdf(path: Path) -> LoadedDocument:
    import pypdf
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    limits = current_limits()
    budget = _Budget(limits)
    default = pypdf.Configuration()  # pypdf's own caps per stream, lowered to ours when ours are lower
    caps = {name: min(getattr(default, name), limits.expanded_bytes) for name in (
        "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
        "brotli_maximum_output_length", "jbig2_maximum_output_length", "array_based_stream_maximum_output_length",
        "maximum_declared_stream_length")}
    try:
        with pypdf.apply_configuration(**caps):
            reader = PdfReader(path)
            note = ""
            if reader.is_encrypted:
                try:
                    unlocked = bool(reader.decrypt(""))
                except Exception:  # noqa: BLE001 - pypdf raises several kinds here
                    unlocked = False
                if not unlocked:
                    raise LoadError(
                        "encrypted PDF: it needs a password; save a decrypted copy (e.g. `qpdf --decrypt`) "
                        "and ingest that"
                    )
                note = "encrypted with an empty password: read anyway"
            pages = []
            for page in reader.pages:  # counted page by page: a text bomb stops at the limit
                budget.check_time()
                text = page.extract_text() or ""
                budget.add_text(len(text))
                pages.append(text)
            budget.check_time()
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except LimitReachedError as exc:
        cap = caps["zlib_maximum_output_length"]
        raise LoadError(f"a PDF stream expands to more than {cap / MB:.0f} MB: refused (pypdf's cap per stream, "
                        "lowered to ASSISTANT_MAX_EXPANDED_MB when that is lower; a compression bomb?)") from exc
    except MemoryError as exc:
        raise LoadError(too_expanded(limits, "the PDF")) from exc
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    except Exception as exc:  # noqa: BLE001 - a broken PDF can raise nearly anything inside pypdf
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    text = "\n\n".join(p.strip() for p in pages)
    if not text.strip():
        raise LoadError("PDF has no extractable text (scanned images?); run OCR on it first")
    return LoadedDocument(title=meta_title.strip() or _title_from_text(text, path.stem), segments=[text], note=note)


# -- DOCX ---------------------------------------------------------------------------------
# Read as a stream: the zip's members are checked first (declared sizes, compression ratio),
# then word/document.xml is decompressed through a byte counter and parsed with lxml's
# iterparse, each top-level paragraph or table row handled and freed as soon as it ends.
# The text is what python-docx gives: the body's paragraphs, then each table row's cells
# joined with " | " (a merged cell repeats its text, as python-docx's row.cells does).

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_REL_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
_RUN_TEXT = {_W + "t": None, _W + "tab": "\t", _W + "ptab": "\t", _W + "cr": "\n", _W + "noBreakHyphen": "-"}
_SKIP_IN_PARAGRAPH = {_W + "txbxContent", _W + "del", _W + "moveFrom", _MC + "Fallback", _W + "pPr", _W + "rPr"}
ZIP_MEMBERS_MAX = 10_000
ZIP_RATIO_FROM = 1 * MB  # members smaller than this expanded are not ratio-checked
BLOCK_ELEMENTS_MAX = 1_000_000  # XML elements held for one top-level paragraph/table row at most


class _CappedReader(io.RawIOBase):
    """A zip member read through a counter: more than `cap` bytes out is a LoadError."""

    def __init__(self, raw: IO[bytes], cap: int, limits: Limits, name: str, budget: _Budget) -> None:
        self.raw, self.cap, self.limits, self.name, self.budget = raw, cap, limits, name, budget
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(min(size, BLOCK) if size and size > 0 else BLOCK)
        self.count += len(data)
        if self.count > self.cap:
            raise LoadError(too_expanded(self.limits, f"its member {self.name}"))
        self.budget.check_time()
        return data


def _check_zip_members(infos: list[Any], limits: Limits) -> None:
    if len(infos) > ZIP_MEMBERS_MAX:
        raise LoadError(f"the .docx holds {len(infos):,} zip members, more than {ZIP_MEMBERS_MAX:,}: refused "
                        "(not a Word document?)")
    total = sum(i.file_size for i in infos)
    if total > limits.expanded_bytes:
        raise LoadError(too_expanded(limits, f"the .docx (declared {total / MB:,.0f} MB)"))
    for info in infos:
        if info.file_size > ZIP_RATIO_FROM and info.file_size > limits.zip_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise LoadError(f"its member {info.filename} expands {ratio:,.0f} times ({info.compress_size:,} to "
                            f"{info.file_size:,} bytes), more than the {limits.zip_ratio:g}x allowed: refused as a "
                            "zip bomb (ASSISTANT_MAX_ZIP_RATIO; raise it only if the file is genuine)")


def _small_xml(zf: Any, name: str) -> Any:
    """A small zip member (at most 1 MB) parsed, or None when it is missing or bigger."""
    from lxml import etree

    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MB:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(zf.read(name), parser)
    except etree.XMLSyntaxError:
        return None


def _main_part(zf: Any) -> str:
    rels = _small_xml(zf, "_rels/.rels")
    if rels is not None:
        for rel in rels:
            if rel.get("Type") == _REL_DOC and rel.get("Target"):
                return str(rel.get("Target")).lstrip("/")
    return "word/document.xml"


def _paragraph_text(p: Any) -> str:
    pieces: list[str] = []
    for run in p.iter(_W + "r"):
        node, hidden = run.getparent(), False
        while node is not None and node is not p:  # text boxes, deletions, fallbacks: not the paragraph's text
            if node.tag in _SKIP_IN_PARAGRAPH:
                hidden = True
                break
            node = node.getparent()
        if hidden:
            continue
        for child in run:
            tag = child.tag
            if tag == _W + "t":
                pieces.append(child.text or "")
            elif tag in _RUN_TEXT:
                pieces.append(_RUN_TEXT[tag] or "")
            elif tag == _W + "br" and child.get(_W + "type") in (None, "textWrapping"):
                pieces.append("\n")
    return "".join(pieces)


def _row_cells(row: Any, above: list[str]) -> list[str]:
    """A table row's cell texts per grid column (spans repeat, vertical merges take the cell above)."""
    cells: list[str] = []
    for tc in row.iterchildren(_W + "tc"):
        props = tc.find(_W + "tcPr")
        span, merged = 1, False
        if props is not None:
            grid = props.find(_W + "gridSpan")
            if grid is not None and (grid.get(_W + "val") or "1").isdigit():
                span = max(1, min(int(grid.get(_W + "val") or 1), 1000))
            vmerge = props.find(_W + "vMerge")
            merged = vmerge is not None and vmerge.get(_W + "val") in (None, "continue")
        if merged and len(above) > len(cells):
            text = above[len(cells)]
        else:
            text = "\n".join(_paragraph_text(p) for p in tc.iterchildren(_W + "p"))
        cells.extend([text] * span)
    return cells


def _docx_text(stream: io.RawIOBase, budget: _Budget) -> tuple[list[str], list[str]]:
    """(body paragraphs, table rows) of word/document.xml, read as a stream."""
    from lxml import etree

    paragraphs: list[str] = []
    rows: list[str] = []
    above: list[str] = []  # the previous row of the current top-level table
    held = 0
    body = _W + "body"
    events = etree.iterparse(stream, events=("end",), resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False)
    for _, elem in events:
        held += 1
        parent = elem.getparent()
        if parent is None:
            continue
        tag = elem.tag
        done = False
        if tag == _W + "p" and parent.tag == body:
            text = _paragraph_text(elem)
            budget.add_text(len(text))
            paragraphs.append(text)
            done = True
        elif tag == _W + "tr" and parent.tag == _W + "tbl" and (grand := parent.getparent()) is not None \
                and grand.tag == body:
            above = _row_cells(elem, above)
            row = " | ".join(cell.strip() for cell in above)
            budget.add_text(len(row))
            rows.append(row)
            elem.clear()
            parent.remove(elem)  # the table keeps no rows behind
            held = 0
        elif tag == _W + "tbl" and parent.tag == body:
            above = []
            done = True
        elif parent.tag == body:
            done = True  # sectPr, sdt, bookmarks ...: not text python-docx gives
        if done:
            elem.clear()
            while elem.getprevious() is not None:
                del parent[0]
            held = 0
        elif held > BLOCK_ELEMENTS_MAX:
            raise LoadError(f"one paragraph or table row holds more than {BLOCK_ELEMENTS_MAX:,} XML elements: "
                            "refused (a crafted document?)")
    return paragraphs, rows


def load_docx(path: Path) -> LoadedDocument:
    import zipfile

    from lxml import etree

    limits = current_limits()
    budget = _Budget(limits)
    try:
        with zipfile.ZipFile(path) as zf:
            _check_zip_members(zf.infolist(), limits)
            name = _main_part(zf)
            try:
                info = zf.getinfo(name)
            except KeyError as exc:
                raise LoadError(f"corrupt or unreadable .docx (no {name}); re-save it from Word") from exc
            with zf.open(info) as member:
                capped = _CappedReader(member, min(limits.expanded_bytes, info.file_size), limits, name, budget)
                paragraphs, rows = _docx_text(capped, budget)
            core = _small_xml(zf, "docProps/core.xml")
    except LoadError:
        raise
    except etree.XMLSyntaxError as exc:
        if "huge" in str(exc).lower():  # libxml2's own cap on one text node (10 MB)
            raise LoadError(too_expanded(limits, "a text run of the .docx")) from exc
        raise LoadError(f"corrupt or unreadable .docx (XML: {exc}); re-save it from Word") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise LoadError(f"corrupt or unreadable .docx ({type(exc).__name__}); re-save it from Word") from exc
    except Exception as exc:  # noqa: BLE001
        raise LoadError(f"corrupt or unreadable .docx ({type(exc).__name__}: {exc}); re-save it from Word") from exc
    text = "\n\n".join(p.strip() for p in [*paragraphs, *rows] if p.strip())
    if not text:
        raise LoadError("empty document: the .docx has no text")
    title = ""
    if core is not None:
        node = core.find("{http://purl.org/dc/elements/1.1/}title")
        title = (node.text or "").strip() if node is not None else ""
    return LoadedDocument(title=title or _title_from_text(text, path.stem), segments=[text])


LOADERS: dict[str, Callable[[Path], LoadedDocument]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_text,
    ".markdown": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load(path: Path, limits: Limits | None = None) -> LoadedDocument:
    """The loader for the file's suffix, run under `limits` (default: `Limits()`, the settings' defaults)."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(LOADERS))}")
    token = _LIMITS.set(limits or Limits())
    try:
        return loader(path)
    except MemoryError as exc:
        raise LoadError("ran out of memory reading it: refused (lower ASSISTANT_MAX_TEXT_MB / "
                        "ASSISTANT_MAX_EXPANDED_MB, or split the file)") from exc
    finally:
        _LIMITS.reset(token)


def text_of(doc: LoadedDocument) -> str:
    """The whole text (for small documents and tests)."""
    buffer = io.StringIO()
    for piece in doc.segments:
        buffer.write(piece)
    return buffer.getvalue()
