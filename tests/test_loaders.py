"""Loaders turn each supported file into text, or a LoadError naming the problem and the fix."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant import loaders
from assistant.loaders import LoadError


def load_text(path: Path) -> str:
    return loaders.text_of(loaders.load(path))


def expect_error(path: Path, *words: str) -> str:
    with pytest.raises(LoadError) as info:
        loaders.text_of(loaders.load(path))
    message = str(info.value).lower()
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# -- plain text ---------------------------------------------------------------------------


def test_utf8_text_round_trips_exactly_with_crlf_and_bom(tmp_path: Path) -> None:
    text = "Harbour notes\r\n\r\nThe ferry leaves at 07:40 \u2014 caf\u00e9 opens at 7.\r\n\U0001f6a2 emoji too.\r\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode("utf-8"))
    doc = loaders.load(path)
    assert doc.title == "Harbour notes"
    assert loaders.text_of(doc) == text  # line endings are kept: chunk offsets point into this text

    bom = tmp_path / "bom.md"
    bom.write_bytes(b"\xef\xbb\xbf# Heading\n\nBody.\n")
    doc = loaders.load(bom)
    assert doc.title == "Heading"
    assert loaders.text_of(doc) == "# Heading\n\nBody.\n"  # the BOM is not document text


def test_large_text_is_streamed_in_bounded_pieces(tmp_path: Path) -> None:
    # 3 MB with a two-byte character straddling every 1 MiB read boundary.
    line = "Stra\u00dfe und Gr\u00fc\u00dfe aus K\u00f6ln, seit 1880 dieselbe Adresse.\n"
    text = line * (3 * 1024 * 1024 // len(line.encode()))
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8", newline="")
    pieces = list(loaders.load(path).segments)
    assert len(pieces) >= 3
    assert all(len(p) <= loaders.BLOCK for p in pieces)
    assert "".join(pieces) == text


def test_empty_and_whitespace_only_files_fail(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_bytes(b" \n\t\r\n" * 2000)
    expect_error(tmp_path / "empty.txt", "empty")
    expect_error(tmp_path / "blank.md", "empty", "whitespace")


def test_binary_file_named_txt_fails(tmp_path: Path) -> None:
    path = tmp_path / "program.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + random.Random(1).randbytes(4000))
    expect_error(path, "binary", "nul")


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Our team met at the caf\u00e9 on Monday to discuss the r\u00e9sum\u00e9 of the new hire. "
                   "Everyone agreed that the na\u00efve approach was fine.\n"),
        ("cp1252", "Ig\u00e5r gick vi till aff\u00e4ren f\u00f6r att k\u00f6pa f\u00e4rskt br\u00f6d och "
                   "mj\u00f6lk. Sedan tr\u00e4ffade vi v\u00e5ra v\u00e4nner p\u00e5 kaf\u00e9et.\n"),
        ("cp1252", "Ieri siamo andati al mercato a comprare pane fresco e latte. Poi abbiamo incontrato "
                   "gli amici al caff\u00e8, perch\u00e9 era gi\u00e0 tardi.\n"),
        ("cp1252", "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e at the fa\u00e7ade. Se\u00f1or M\u00fcller\u2019s r\u00e9sum\u00e9.\n"),
        ("latin-1", "Ein sch\u00f6ner Tag in M\u00fcnchen f\u00fcr J\u00fcrgen und Bj\u00f6rn. \u00c4pfel, \u00d6l und "
                    "\u00dcbermut.\n"),
        ("cp1257", "Vakar nu\u0117jome \u012f parduotuv\u0119 nusipirkti \u0161vie\u017eios duonos ir pieno. "
                   "V\u0117liau susitikome su draugais kavin\u0117je.\n"),
        ("cp1250", "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144. Wczoraj poszli\u015bmy do sklepu, "
                   "\u017ceby kupi\u0107 \u015bwie\u017ce pieczywo i mleko.\n"),
        ("cp1251", "\u0412\u0447\u0435\u0440\u0430 \u043c\u044b \u043f\u043e\u0448\u043b\u0438 \u0432 "
                   "\u043c\u0430\u0433\u0430\u0437\u0438\u043d, \u0447\u0442\u043e\u0431\u044b "
                   "\u043a\u0443\u043f\u0438\u0442\u044c \u0441\u0432\u0435\u0436\u0438\u0439 "
                   "\u0445\u043b\u0435\u0431 \u0438 \u043c\u043e\u043b\u043e\u043a\u043e.\n"),
        ("utf-16", "Hello w\u00f6rld. UTF-16 text with a byte order mark.\n"),
    ],
)
def test_legacy_encodings_are_detected_and_decoded_exactly(tmp_path: Path, encoding: str, text: str) -> None:
    raw = text.encode(encoding)
    if encoding != "utf-16":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # the case under test: bytes that are invalid UTF-8
    path = tmp_path / "legacy.txt"
    path.write_bytes(raw)
    assert load_text(path) == text


def test_undecodable_garbage_fails_cleanly(tmp_path: Path) -> None:
    rng = random.Random(7)
    high = tmp_path / "high.txt"
    high.write_bytes(bytes(rng.randrange(128, 256) for _ in range(3000)))
    controls = tmp_path / "controls.txt"
    controls.write_bytes(bytes([0x80, 0x81, 0x8D, 0x8F, 0x90, 0x9D]) * 300)
    for path in (high, controls):
        expect_error(path, "undecodable", "utf-8")


# -- HTML ---------------------------------------------------------------------------------


def _load_html(path: Path, html: str) -> loaders.LoadedDocument:
    path.write_text(html, encoding="utf-8")
    return loaders.load(path)


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    doc = _load_html(path,
        "<!doctype html><html><head><title>Tide tables</title><style>p { color: red }</style>"
        "<script>var trackingSecret = 'zebra-omega-42';</script></head><body>"
        "<h1>High water</h1><p>High water at Vessa is at 06:12.</p><p>Low water follows at 12:30.</p>"
        "<noscript>Enable JavaScript</noscript><script>document.write('injected banana')</script>"
        "</body></html>")
    text = loaders.text_of(doc)
    assert doc.title == "Tide tables"
    assert "High water at Vessa is at 06:12." in text
    assert "High water at Vessa is at 06:12.\nLow water" in text  # block tags end lines
    for hidden in ("trackingSecret", "zebra", "banana", "color: red", "Enable JavaScript"):
        assert hidden not in text


def test_html_in_a_legacy_encoding_and_script_only_page(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.htm"
    legacy.write_bytes("<html><body><p>Le caf\u00e9 ouvre \u00e0 8 h, la cr\u00e8me br\u00fbl\u00e9e "
                       "co\u00fbte 5 euros.</p></body></html>".encode("cp1252"))
    assert "Le caf\u00e9 ouvre \u00e0 8 h, la cr\u00e8me br\u00fbl\u00e9e" in load_text(legacy)

    scripts = tmp_path / "app.html"
    scripts.write_text("<html><head><script>run()</script></head><body><script>x()</script></body></html>")
    expect_error(scripts, "no visible text")


# -- PDF ----------------------------------------------------------------------------------


def test_pdf_text_is_extracted(tmp_path: Path, pdf_with_text: Callable[[list[str]], bytes]) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf_with_text(["Harbour expansion report.", "The new pier opened in March (early)."]))
    doc = loaders.load(path)
    text = loaders.text_of(doc)
    assert "Harbour expansion report." in text
    assert "The new pier opened in March (early)." in text
    assert doc.title == "Harbour expansion report."


def test_corrupt_pdfs_fail_with_reason(tmp_path: Path, pdf_with_text: Callable[[list[str]], bytes]) -> None:
    noise = tmp_path / "noise.pdf"
    noise.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(pdf_with_text(["Some text on a page."])[:200])
    for path in (noise, truncated):
        message = expect_error(path, "corrupt", "pdf")
        assert "re-export" in message


def test_encrypted_pdf_fails_as_encrypted(tmp_path: Path, encrypted_pdf: Callable[[Path], Path]) -> None:
    path = encrypted_pdf(tmp_path / "locked.pdf")
    expect_error(path, "encrypted", "password")


def test_pdf_without_text_layer_fails(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    path = tmp_path / "scan.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    expect_error(path, "no extractable text", "ocr")


# -- DOCX ---------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables(tmp_path: Path, make_docx: Callable[..., Path]) -> None:
    path = make_docx(
        tmp_path / "minutes.docx",
        "Council minutes",
        ["The council met on 3 May.", "", "It approved the new library budget."],
        table=[["Item", "Cost"], ["Roof", "12000"]],
    )
    doc = loaders.load(path)
    text = loaders.text_of(doc)
    assert doc.title == "Council minutes"
    assert "The council met on 3 May.\n\nIt approved the new library budget." in text
    assert "Item | Cost" in text and "Roof | 12000" in text


def test_corrupt_and_empty_docx_fail(tmp_path: Path, make_docx: Callable[..., Path]) -> None:
    corrupt = tmp_path / "corrupt.docx"
    corrupt.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    expect_error(corrupt, "corrupt", ".docx")
    empty = make_docx(tmp_path / "empty.docx", "", [])
    expect_error(empty, "empty")


# -- dispatch -----------------------------------------------------------------------------


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_text("plain words")
    assert not loaders.is_supported(path)
    assert loaders.is_supported(tmp_path / "UPPER.TXT")
    message = expect_error(path, "unsupported", ".xyz")
    assert ".txt" in message and ".pdf" in message  # says what is supported
