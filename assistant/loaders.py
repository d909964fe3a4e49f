"""Turn a file into document text, or a LoadError that says what is wrong and what to do.

Plain text is streamed: `LoadedDocument.segments` yields pieces whose concatenation is the
document text, so a 50 MB file is never held twice in memory. Other formats are parsed whole.
Loaders register by file suffix in `LOADERS`; add one there to support a new format.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20  # bytes read at a time


class LoadError(Exception):
    """A file that cannot be indexed; the message names the problem and the fix."""


@dataclass
class LoadedDocument:
    title: str
    segments: Iterable[str]  # concatenated, the document text that chunk offsets point into


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
    with open(path, "rb") as handle:
        first = True
        try:
            while block := handle.read(BLOCK):
                if first and b"\x00" in block[:8192] and not block.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise LoadError(
                        "binary content (NUL bytes) in a text file: it is not text; "
                        "convert it to .txt/.md/.html/.pdf/.docx or remove it"
                    )
                first = False
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8-sig"
        except UnicodeDecodeError:
            pass
        handle.seek(0)
        sample = handle.read(4 * BLOCK)
    encoding = _guess_encoding(sample)
    if encoding is None:
        raise LoadError("undecodable bytes: not UTF-8 and no text encoding fits; re-save the file as UTF-8")
    return encoding


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


def _stream_text(path: Path, encoding: str) -> Iterator[str]:
    try:
        with open(path, encoding=encoding, newline="", errors="strict") as handle:
            while piece := handle.read(BLOCK):
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
    return LoadedDocument(title=title, segments=_stream_text(path, encoding))


# -- HTML ---------------------------------------------------------------------------------

_BLOCK_TAGS = "p,div,h1,h2,h3,h4,h5,h6,li,br,tr,td,th,section,article,blockquote,pre,header,footer,dd,dt"


def load_html(path: Path) -> LoadedDocument:
    from selectolax.lexbor import LexborHTMLParser

    raw = path.read_bytes()
    if not raw.strip():
        raise LoadError("empty file: there is no text to index")
    tree = LexborHTMLParser(raw.decode("utf-8", errors="replace") if _is_utf8(raw) else _decode_guess(raw))
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    tree.strip_tags(["script", "style", "noscript", "template", "svg", "iframe", "object"])
    for node in tree.css(_BLOCK_TAGS):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(deep=True) if root is not None else ""
    text = "\n".join(line.strip() for line in text.splitlines())
    if not text.strip():
        raise LoadError("no visible text in this HTML page")
    if not title:
        heading = tree.css_first("h1")
        title = heading.text(strip=True) if heading else _title_from_text(text, path.stem)
    return LoadedDocument(title=title, segments=[text])


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
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
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
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    except Exception as exc:  # noqa: BLE001 - a broken PDF can raise nearly anything inside pypdf
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc}); re-export the PDF") from exc
    text = "\n\n".join(p.strip() for p in pages)
    if not text.strip():
        raise LoadError("PDF has no extractable text (scanned images?); run OCR on it first")
    return LoadedDocument(title=meta_title.strip() or _title_from_text(text, path.stem), segments=[text])


# -- DOCX ---------------------------------------------------------------------------------


def load_docx(path: Path) -> LoadedDocument:
    import zipfile

    import docx

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise LoadError(f"corrupt or unreadable .docx ({type(exc).__name__}); re-save it from Word") from exc
    except Exception as exc:  # noqa: BLE001
        raise LoadError(f"corrupt or unreadable .docx ({type(exc).__name__}: {exc}); re-save it from Word") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    text = "\n\n".join(p.strip() for p in parts if p.strip())
    if not text:
        raise LoadError("empty document: the .docx has no text")
    title = (document.core_properties.title or "").strip() or _title_from_text(text, path.stem)
    return LoadedDocument(title=title, segments=[text])


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


def load(path: Path) -> LoadedDocument:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(LOADERS))}")
    return loader(path)


def text_of(doc: LoadedDocument) -> str:
    """The whole text (for small documents and tests)."""
    buffer = io.StringIO()
    for piece in doc.segments:
        buffer.write(piece)
    return buffer.getvalue()
