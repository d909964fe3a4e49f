"""Plain text (.txt, .md): encoding detected while streaming, the text streamed in blocks."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from assistant.loaders.base import (
    BLOCK,
    Budget,
    Limits,
    LoadedDocument,
    LoadError,
    current_limits,
    title_from_text,
    too_much_text,
)


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
    encoding = guess_encoding(sample)
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


def guess_encoding(raw: bytes) -> str | None:
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
    budget = Budget(limits)  # None: the limits of the load() running when streaming starts
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
    title = title_from_text(head, path.stem)
    limits = current_limits()
    if path.stat().st_size > 4 * limits.text_chars:  # at most 4 bytes a character: over, whatever it decodes to
        raise LoadError(too_much_text(limits))
    return LoadedDocument(title=title, segments=_stream_text(path, encoding, limits))
