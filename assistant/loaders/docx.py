"""Word .docx: the zip checked member by member, then its XML parsed as a stream."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any

from assistant.loaders.base import BLOCK, MB, Budget, Limits, LoadedDocument, LoadError, title_from_text, too_expanded

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

    def __init__(self, raw: IO[bytes], cap: int, limits: Limits, name: str, budget: Budget) -> None:
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


def _docx_text(stream: io.RawIOBase, budget: Budget) -> tuple[list[str], list[str]]:
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

    budget = Budget()
    limits = budget.limits
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
    return LoadedDocument(title=title or title_from_text(text, path.stem), segments=[text])
