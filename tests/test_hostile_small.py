"""Issue 12, problems 7, 9 and 10: unreadable folders and files, long upload names, and the small
ones (non-UTF-8 file names, UTF-16/32 text without a BOM, `DELETE /api/documents/`, control
characters in printed names, a PDF with an empty user password).

Tests run as root here, where a mode-000 folder is still readable: the unreadable cases make
`os.scandir` / `os.stat` raise PermissionError for one folder, as they do for any other user.
The CLI runs in-process through `main()` with the session's embedding model.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerThread, wait_ready

import assistant.ingest as ingest_module
from assistant.cli import main
from assistant.embed import Embedder
from assistant.ingest import Ingestor, collect_files, printable_name
from assistant.loaders import LoadError, load, text_of
from assistant.service import MAX_NAME_BYTES, AssistantService, safe_filename
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig

TEXT = ("The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier.\n"
        "The new pier is 420 metres long and was designed by engineer Tove Rask.\n")


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, embedder: Embedder, tmp_path: Path) -> list[str]:
    """`main()` arguments for an index in tmp_path; the ingest uses the session's model."""
    monkeypatch.setattr(ingest_module, "Embedder", lambda *args, **kwargs: embedder)
    return ["--index-dir", str(tmp_path / "index")]


def _deny(monkeypatch: pytest.MonkeyPatch, folder: Path, *, stat: bool = False) -> None:
    """Reading `folder` fails with PermissionError, as for a mode-000 folder when not root:
    listing it (os.scandir) and, with `stat`, reaching anything inside it (os.stat)."""
    real_scandir, real_stat = os.scandir, os.stat
    locked = str(folder)

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    def fake_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str | os.PathLike) and os.fspath(path).startswith(locked + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    if stat:
        monkeypatch.setattr(os, "stat", fake_stat)


def _folder(path: Path, files: dict[str, str]) -> Path:
    """`path`, made, holding `files` (name: text)."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _failed_ingest(cli: list[str], capsys: pytest.CaptureFixture[str], *paths: Path) -> str:
    """`assistant ingest paths`, which must exit 1 (something failed); what it printed."""
    assert main([*cli, "ingest", *map(str, paths), "--no-progress"]) == 1
    return capsys.readouterr().out


# -- 7: unreadable folders and files --------------------------------------------------------------


def test_an_unreadable_folder_is_named_in_the_summary_and_the_exit_is_1(
        tmp_path: Path, cli: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    _folder(docs / "locked", {"inner.txt": "Text nobody can read.\n"})
    (docs / "harbour.txt").write_text(TEXT)
    _deny(monkeypatch, docs / "locked")

    files, notes = collect_files([docs])
    assert [f.name for f in files] == ["harbour.txt"]
    assert [(n.source, n.status) for n in notes] == [(str(docs / "locked"), "failed")]
    assert "cannot read this folder (Permission denied)" in notes[0].reason

    out = _failed_ingest(cli, capsys, docs)  # was: exit 0, and nothing said
    assert "1 added" in out and "1 failed" in out
    assert f"failed: {docs / 'locked'}: cannot read this folder (Permission denied)" in out


def test_a_file_under_an_unsearchable_folder_is_a_failure_not_a_traceback(
        tmp_path: Path, cli: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    locked = _folder(tmp_path / "dir", {"inner.txt": TEXT})
    good = tmp_path / "good.txt"
    good.write_text(TEXT)
    _deny(monkeypatch, locked, stat=True)

    # was: PermissionError raised out of collect_files (a traceback from the CLI)
    out = _failed_ingest(cli, capsys, locked / "inner.txt", good)
    assert "1 added" in out and "1 failed" in out
    assert f"failed: {locked / 'inner.txt'}: cannot read it (Permission denied)" in out


# -- 10: file names that are not UTF-8, or hold control characters ----------------------------------


def test_a_file_name_that_is_not_utf8_is_a_clear_failure(
        tmp_path: Path, cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    docs = _folder(tmp_path / "docs", {"harbour.txt": TEXT})
    latin1 = docs / os.fsdecode(b"caf\xe9.txt")  # a Latin-1 name, as an old archive leaves it
    try:
        latin1.write_text("Caf\u00e9 notes about the pier and the harbour.\n")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take non-UTF-8 names")

    out = _failed_ingest(cli, capsys, docs)
    assert "UnicodeEncodeError" not in out  # was: failed: ...: UnicodeEncodeError: 'utf-8' codec can't encode ...
    assert "1 added" in out and "1 failed" in out
    assert f"failed: {docs}/caf\\xe9.txt: the name is not valid UTF-8 (byte 0xe9): rename it" in out


def test_control_characters_in_names_are_escaped_in_documents_and_summaries(
        tmp_path: Path, cli: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    docs = _folder(tmp_path / "docs", {
        "new\nline.txt": TEXT,
        "empty\x1b[2J.txt": "",  # fails: empty, and its name would clear the screen
        "title.txt": "Fake title \x1b[31m in red\x07\n" + TEXT,
    })

    out = _failed_ingest(cli, capsys, docs)
    assert "\x1b" not in out
    assert f"failed: {docs}/empty\\x1b[2J.txt: empty file" in out

    assert main([*cli, "documents"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3  # two documents and the totals: no line was split by a name
    assert any(line.endswith(f"{docs}/new\\nline.txt") for line in lines)
    assert any("Fake title \\x1b[31m in red\\x07" in line for line in lines)


def test_printable_name() -> None:
    assert printable_name("plain name.txt") == "plain name.txt"
    assert printable_name("caf\u00e9 \u6771\u4eac\u00a0x.txt") == "caf\u00e9 \u6771\u4eac\u00a0x.txt"
    assert printable_name("a\nb\tc\x00d\x7f") == "a\\nb\\tc\\x00d\\x7f"
    assert printable_name("evil\u202etxt.exe") == "evil\\u202etxt.exe"  # a bidi override
    assert printable_name(os.fsdecode(b"caf\xe9")) == "caf\\xe9"


# -- 10: UTF-16/32 text without a BOM ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le", "utf-32-be", "utf-32-le"])
def test_utf16_and_utf32_without_bom_are_read_as_text(tmp_path: Path, encoding: str) -> None:
    text = TEXT + "Caf\u00e9 cr\u00e8me, \u6771\u4eac, \u03a9, \U0001f600.\n"
    path = tmp_path / "wide.txt"
    path.write_bytes(text.encode(encoding))  # no BOM; was: "binary content (NUL bytes)"
    doc = load(path)
    assert text_of(doc) == text
    assert doc.title.startswith("The harbour of Vessa")


def test_binary_data_is_still_binary_content(tmp_path: Path) -> None:
    rng = random.Random(12)
    samples = [bytes(rng.randrange(256) for _ in range(rng.choice([40, 300, 5000]))) + b"\x00" for _ in range(200)]
    samples.append(b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + bytes(range(256)) * 4)
    samples.append(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(2000)))
    samples.append(TEXT.encode("utf-8") + b"\x00\x00\x00\x00" + TEXT.encode("utf-8"))
    path = tmp_path / "data.txt"
    for data in samples:
        path.write_bytes(data)
        with pytest.raises(LoadError, match="binary content"):
            load(path)


# -- 10: a PDF with an empty user password -----------------------------------------------------------


def test_a_pdf_with_an_empty_password_is_ingested_and_the_report_says_so(
        tmp_path: Path, settings: Settings, embedder: Embedder, pdf_with_text: Any) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_text(["The new pier is 420 metres long."]))))
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="RC4-128")
    path = tmp_path / "open.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    assert PdfReader(path).is_encrypted

    report = Ingestor(settings, embedder=embedder).ingest_paths([path], progress=False)
    (result,) = report.results
    assert result.status == "added" and result.chunks == 1
    assert result.reason == "encrypted with an empty password: read anyway"
    assert f"added: {path}: encrypted with an empty password: read anyway" in report.summary()


# -- 9 and 10 through the API: long names, non-UTF-8 names, DELETE /api/documents/ -------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[httpx.Client, Path]]:
    folder = tmp_path_factory.mktemp("hostile_small")
    service = AssistantService(Settings(index_dir=folder / "index"), embedder=embedder)
    try:
        with ServerThread(create_app(service, ServerConfig(host="127.0.0.1", port=0, mount_ui=False))) as url:
            wait_ready(url)
            with httpx.Client(base_url=url, timeout=120) as client:
                yield client, folder / "index" / "uploads"
    finally:
        service.close()


def test_long_names_keep_their_extension() -> None:
    assert safe_filename("a" * 200 + ".md") == "a" * (MAX_NAME_BYTES - 3) + ".md"  # was: cut to 180, no .md
    long_accents = safe_filename("\u00e9" * 200 + ".txt")  # 2 bytes a letter: cut by bytes, not characters
    assert long_accents.endswith("\u00e9.txt") and len(long_accents.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe_filename("report.pdf") == "report.pdf"
    assert len(safe_filename("x" * 300)) == MAX_NAME_BYTES


def test_a_long_upload_name_is_accepted_and_stored_with_its_extension(api: tuple[httpx.Client, Path]) -> None:
    client, uploads = api
    for name in ("b" * 200 + ".md", "\u00e9t\u00e9 " * 80 + ".txt"):
        r = client.post("/api/documents", files=[("files", (name, TEXT.encode(), "text/plain"))])
        assert r.status_code == 200, r.text  # was: 415 unsupported file type
        (result,) = r.json()["results"]
        assert result["status"] in ("added", "unchanged")
        stored = Path(result["source"])
        assert stored.parent == uploads.resolve() and stored.is_file()
        assert stored.suffix == Path(name).suffix and len(stored.name.encode("utf-8")) <= MAX_NAME_BYTES


def test_an_upload_name_that_is_not_utf8_gets_a_safe_name(api: tuple[httpx.Client, Path]) -> None:
    client, uploads = api
    boundary = "hostile-small-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"".encode()
            + b"caf\xe9 notes.txt" + b"\"\r\nContent-Type: text/plain\r\n\r\n" + TEXT.encode()
            + f"\r\n--{boundary}--\r\n".encode())
    r = client.post("/api/documents", content=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["filename"] == "caf_ notes.txt" and (uploads / "caf_ notes.txt").is_file()


def test_delete_documents_with_a_trailing_slash_is_json_not_a_redirect(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    r = client.delete("/api/documents/")
    assert r.status_code in (404, 405), (r.status_code, r.headers)  # was: 307 to /api/documents
    assert r.headers["content-type"].startswith("application/json")
    assert "DELETE /api/documents/{doc_id}" in r.json()["error"]
    r = client.get("/api/documents/")  # the same route as without the slash
    assert r.status_code == 200 and "documents" in r.json()
    r = client.delete("/api/documents/no-such-id/")
    assert r.status_code == 404 and "no document with id" in r.json()["error"]
