"""HTML: the visible text as Markdown-like lines, the page bounded before it is parsed whole."""

from __future__ import annotations

import re
from pathlib import Path

from assistant.loaders.base import Limits, LoadedDocument, LoadError, current_limits, title_from_text, too_much_text
from assistant.loaders.text import guess_encoding

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
        title = heading.text(strip=True) if heading else title_from_text(text, path.stem)
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
    encoding = guess_encoding(raw)
    return raw.decode(encoding or "utf-8", errors="replace")
