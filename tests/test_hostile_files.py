"""Hostile files (issue 12, problem 1): every loader is bounded while it reads.

Small bombs against LOW limits set by each test: a .docx whose XML inflates past the
decompressed-size limit, one over the compression ratio, one whose text passes the text limit,
one huge text node, a PDF stream that inflates past its cap, an HTML page with too many tags,
a text file with too much text. Each is refused with a message that says how far it expands and
which setting to raise, quickly, and an ingest of it changes nothing. The streaming .docx reader
gives the same text as python-docx for ordinary documents (paragraphs, tables, merged cells).
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support import one_page_pdf

from assistant import loaders
from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import Ingestor
from assistant.loaders import Limits, LoadError
from assistant.settings import Settings

MB = 1024 * 1024
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _rewrite_docx(src: Path, dst: Path, document_xml: bytes, level: int = 9) -> Path:
    """A copy of a real .docx with its word/document.xml replaced (deflated at `level`)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zout:
        for info in zin.infolist():
            data = document_xml if info.filename == "word/document.xml" else zin.read(info)
            zout.writestr(info.filename, data)
    return dst


def _body(inner: bytes) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="' + W_NS.encode()
            + b'"><w:body>' + inner + b"<w:sectPr/></w:body></w:document>")


def _paragraphs(n: int, text: bytes) -> bytes:
    return b"".join(b"<w:p><w:r><w:t>" + text + b" %d</w:t></w:r></w:p>" % i for i in range(n))


@pytest.fixture
def base_docx(tmp_path: Path, make_docx: Callable[..., Path]) -> Path:
    return make_docx(tmp_path / "base.docx", "Base", ["A harmless paragraph."])


def _assert_refused(path: Path, limits: Limits, *needles: str) -> str:
    started = time.monotonic()
    with pytest.raises(LoadError) as info:
        loaders.text_of(loaders.load(path, limits))
    elapsed = time.monotonic() - started
    message = str(info.value)
    for needle in needles:
        assert needle.lower() in message.lower(), message
    assert elapsed < 5, f"refusing took {elapsed:.1f} s"
    return message


def test_docx_over_the_decompressed_size_is_refused_from_its_declared_sizes(tmp_path: Path, base_docx: Path) -> None:
    bomb = _rewrite_docx(base_docx, tmp_path / "bomb.docx", _body(_paragraphs(60_000, b"x" * 60)))  # ~6 MB of XML
    assert bomb.stat().st_size < 1 * MB
    message = _assert_refused(bomb, Limits(expanded_bytes=2 * MB, zip_ratio=10_000),
                       "expands to more than 2 MB: refused", "ASSISTANT_MAX_EXPANDED_MB")
    assert "declared" in message


def test_docx_member_over_the_compression_ratio_is_refused(tmp_path: Path, base_docx: Path) -> None:
    bomb = _rewrite_docx(base_docx, tmp_path / "ratio.docx", _body(b"<w:p>" + b"<w:r/>" * 1_000_000 + b"</w:p>"))
    _assert_refused(bomb, Limits(zip_ratio=50), "word/document.xml expands", "zip bomb", "ASSISTANT_MAX_ZIP_RATIO")


def test_docx_with_lying_sizes_is_caught_while_streaming(tmp_path: Path, base_docx: Path) -> None:
    """The central directory says 1 KB; the counter and zipfile's own size/CRC checks stop the inflation."""
    honest = _rewrite_docx(base_docx, tmp_path / "honest.docx", _body(_paragraphs(40_000, b"y" * 50)))
    raw = bytearray(honest.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("word/document.xml")
        real = info.file_size
    lie = (1024).to_bytes(4, "little")
    needle = real.to_bytes(4, "little")
    # Local header (offset 22) and central directory (offset 24) both carry the uncompressed size.
    start = 0
    while (at := raw.find(needle, start)) != -1:
        raw[at : at + 4] = lie
        start = at + 4
    liar = tmp_path / "liar.docx"
    liar.write_bytes(bytes(raw))
    message = _assert_refused(liar, Limits(expanded_bytes=2 * MB))
    assert "refused" in message or "corrupt" in message, message


def test_docx_text_over_the_text_limit_is_refused_while_parsing(tmp_path: Path, base_docx: Path) -> None:
    words = b"harbour council ferry budget winter library bridge station survey archive"
    doc = _rewrite_docx(base_docx, tmp_path / "long.docx", _body(_paragraphs(30_000, words)))  # ~2.4 MB of text
    _assert_refused(doc, Limits(text_chars=1 * MB, zip_ratio=10_000), "more than 1 MB of text: refused", "ASSISTANT_MAX_TEXT_MB")


def test_docx_with_one_huge_text_node_is_refused(tmp_path: Path, base_docx: Path) -> None:
    doc = _rewrite_docx(base_docx, tmp_path / "node.docx", _body(b"<w:p><w:r><w:t>" + b"z" * (12 * MB) + b"</w:t></w:r></w:p>"))
    _assert_refused(doc, Limits(zip_ratio=100_000), "refused")


def test_streaming_docx_text_matches_python_docx(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Minutes"
    document.add_paragraph("First paragraph.")
    p = document.add_paragraph("Tab")
    p.add_run("\tafter tab")
    p.add_run().add_break()
    p.add_run("after break")
    document.add_paragraph("")
    table = document.add_table(rows=3, cols=3)
    for r in range(3):
        for c in range(3):
            table.cell(r, c).text = f"r{r}c{c}"
    table.cell(0, 0).merge(table.cell(0, 1))  # horizontal span
    table.cell(1, 2).merge(table.cell(2, 2))  # vertical merge
    document.add_paragraph("Last paragraph.")
    path = tmp_path / "parity.docx"
    document.save(str(path))

    reread = docx.Document(str(path))
    parts = [q.text for q in reread.paragraphs]
    for t in reread.tables:
        for row in t.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    expected = "\n\n".join(q.strip() for q in parts if q.strip())
    loaded = loaders.load(path)
    assert loaders.text_of(loaded) == expected
    assert loaded.title == "Minutes"


def _pdf_with_stream(content: bytes) -> bytes:
    """A one-page PDF whose content stream is `content`, FlateDecode-compressed."""
    return one_page_pdf(content, flate=True, media_box="0 0 200 200")


def test_pdf_stream_over_the_decompressed_size_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(_pdf_with_stream((b"BT /F1 12 Tf 10 10 Td (" + b"a" * 100 + b") Tj ET\n") * 40_000))  # ~5 MB
    assert bomb.stat().st_size < 200_000
    _assert_refused(bomb, Limits(expanded_bytes=1 * MB), "a PDF stream", "expands to more than 1 MB: refused")


def test_pdf_text_over_the_text_limit_is_refused_page_by_page(tmp_path: Path,
                                                             pdf_with_text: Callable[[list[str]], bytes]) -> None:
    path = tmp_path / "pages.pdf"
    path.write_bytes(pdf_with_text([f"Page {i} of a long report about the harbour." for i in range(40)]))
    assert loaders.text_of(loaders.load(path))  # fine under the defaults
    _assert_refused(path, Limits(text_chars=200), "more than", "MB of text: refused")


def test_html_with_too_many_tags_is_refused_before_parsing(tmp_path: Path) -> None:
    page = tmp_path / "tags.html"
    page.write_bytes(b"<html><body>" + b"<p>ab</p>" * 5000 + b"</body></html>")
    _assert_refused(page, Limits(html_elements=2000), "HTML tags", "ASSISTANT_MAX_HTML_ELEMENTS")
    assert "ab" in loaders.text_of(loaders.load(page, Limits(html_elements=20_000)))


def test_text_over_the_text_limit_is_refused_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("The ferry leaves at seven.\n" * 80_000)  # ~2.2 MB
    _assert_refused(path, Limits(text_chars=1 * MB), "more than 1 MB of text: refused")


def test_an_ingest_of_bombs_fails_each_file_and_changes_nothing(tmp_path: Path, base_docx: Path,
                                                               embedder: Embedder) -> None:
    settings = Settings(index_dir=tmp_path / "index", max_expanded_mb=2, max_text_mb=1, max_zip_ratio=50,
                        max_html_elements=2000)
    good = tmp_path / "docs"
    good.mkdir()
    (good / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.")
    assert Ingestor(settings, embedder=embedder).ingest_paths([good], progress=False).count("added") == 1
    before = IndexStore.read_manifest(settings.index_dir)["generation"]

    bombs = tmp_path / "bombs"
    bombs.mkdir()
    _rewrite_docx(base_docx, bombs / "bomb.docx", _body(_paragraphs(60_000, b"x" * 60)))
    (bombs / "tags.html").write_bytes(b"<p>ab</p>" * 5000)
    (bombs / "long.txt").write_text("The ferry leaves at seven.\n" * 80_000)
    (bombs / "bomb.pdf").write_bytes(_pdf_with_stream((b"BT /F1 12 Tf (" + b"a" * 100 + b") Tj ET\n") * 40_000))
    report = Ingestor(settings, embedder=embedder).ingest_paths([bombs], progress=False)
    assert [r.status for r in report.results] == ["failed"] * 4, report.summary()
    for r in report.results:
        assert "refused" in r.reason, r
    assert IndexStore.read_manifest(settings.index_dir)["generation"] == before
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        assert [Path(d.source).name for d in store.documents()] == ["ferry.txt"]
