"""Uploads are all-or-nothing on disk as in the index (issue 12, problem 2).

A real server over a real index. Each failure path of POST /api/documents leaves uploads/ (every
byte, no leftover staging folder) and the index exactly as they were: the index locked by a real
`assistant ingest` in another process, a re-upload that fails to parse, one over a loader limit
(a small zip bomb), and an error in the middle of the ingest. A crashed upload's staging folder is
removed when the service starts again.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.ingest import Ingestor
from assistant.service import STAGING_PREFIX, AssistantService
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig

V1 = b"Harbour notes, version ONE.\n\nThe harbour master's office opens at 08:00 on weekdays.\n"
V2 = b"Harbour notes, version TWO.\n\nThe harbour master's office now opens at 09:30 on weekdays.\n"


class Env:
    def __init__(self, url: str, service: AssistantService, settings: Settings) -> None:
        self.url, self.service, self.settings = url, service, settings

    @property
    def uploads(self) -> Path:
        return self.settings.index_dir / "uploads"

    def disk(self) -> dict[str, bytes]:
        """Every file under uploads/ (staging folders included), by relative path."""
        return {str(p.relative_to(self.uploads)): p.read_bytes() for p in sorted(self.uploads.rglob("*")) if p.is_file()}

    def index(self) -> dict[str, tuple[str, int]]:
        return {Path(d.source).name: (d.content_hash, d.n_chunks) for d in self.service.documents()}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("hostile_uploads")
    settings = Settings(index_dir=folder / "index", max_upload_mb=0.5, max_expanded_mb=1, max_zip_ratio=50,
                        max_text_mb=0.25)
    docs = folder / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.\n")
    assert not Ingestor(settings, embedder=embedder).ingest_paths([docs], progress=False).failed
    service = AssistantService(settings, embedder=embedder)
    try:
        with ServerThread(create_app(service, ServerConfig(host="127.0.0.1", port=0))) as url:
            wait_ready(url)
            yield Env(url, service, settings)
    finally:
        service.close()


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=env.url, timeout=120) as c:
        r = c.post("/api/documents", files=[("files", ("notes.txt", V1, "text/plain"))])
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "added", r.text
        yield c


def _docx_bomb() -> bytes:
    xml = (b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           b"<w:body>" + b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>" * 200_000 + b"</w:body></w:document>")  # 7 MB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("word/document.xml", xml)
    return buffer.getvalue()


def _assert_unchanged(env: Env, disk: dict[str, bytes], index: dict[str, tuple[str, int]]) -> None:
    assert env.disk() == disk
    assert env.index() == index
    assert not list(env.uploads.glob(STAGING_PREFIX + "*")), "a staging folder was left behind"
    assert (env.uploads / "notes.txt").read_bytes() == V1


def test_failed_reuploads_keep_the_previous_copy_on_disk_and_in_the_index(env: Env, client: httpx.Client) -> None:
    disk, index = env.disk(), env.index()
    bomb = _docx_bomb()
    assert len(bomb) < 100_000
    cases = [
        ("notes.txt", b"\x00\x01binary\x00" * 100, "binary content"),  # fails to parse
        ("notes.txt", b"harbour " * 40_000, "MB of text: refused"),  # over ASSISTANT_MAX_TEXT_MB
        ("bomb.docx", bomb, "refused"),  # a zip bomb: over the ratio and the expanded size
        ("notes.txt", b"", "empty"),
    ]
    for name, data, reason in cases:
        started = time.monotonic()
        r = client.post("/api/documents", files=[("files", (name, data, "application/octet-stream"))])
        assert time.monotonic() - started < 10
        assert r.status_code == 422, (name, r.status_code, r.text)
        result = r.json()["results"][0]
        assert result["status"] == "failed" and reason in result["reason"], result
        assert result["filename"] == name and name in r.json()["error"]  # the error names the file
        _assert_unchanged(env, disk, index)


def test_refused_while_a_cli_ingest_holds_the_lock(env: Env, client: httpx.Client, tmp_path: Path) -> None:
    """A real `assistant ingest` in another process holds the index's write lock (it never commits
    before it is killed); uploads of a new file and of a new version of notes.txt get 503 and change nothing."""
    disk, index = env.disk(), env.index()
    big = tmp_path / "bulk"
    big.mkdir()
    (big / "long.txt").write_text("".join(f"Line {i} of the long survey of the harbour and its ferries.\n"
                                          for i in range(4000)))
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "ASSISTANT_CHECKPOINT_CHUNKS": "1000000", "ASSISTANT_MAX_TEXT_MB": "100"}
    code = "import sys; from assistant.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", code, "ingest", str(big), "--index-dir", str(env.settings.index_dir),
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ)
    lock = env.settings.index_dir / "write.lock"
    try:
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == f"pid {process.pid}"):
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "the CLI ingest never took the lock"
            time.sleep(0.05)
        r = client.post("/api/documents", files=[("files", ("notes.txt", V2, "text/plain")),
                                                 ("files", ("fresh.md", b"# Fresh\n\nA brand new file.\n", "text/plain"))])
        assert process.poll() is None, "the CLI ingest ended before the upload was tried"
        assert r.status_code == 503, r.text
        assert "index is locked" in r.json()["error"], r.text
        _assert_unchanged(env, disk, index)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert not (env.uploads / "fresh.md").exists()


def test_an_error_in_the_middle_of_the_ingest_changes_nothing(env: Env, client: httpx.Client,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    disk, index = env.disk(), env.index()

    def broken_write(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(env.service.ingestor, "_write", broken_write)
    r = client.post("/api/documents", files=[("files", ("notes.txt", V2, "text/plain")),
                                             ("files", ("other.txt", b"Another harbour note.\n", "text/plain"))])
    assert r.status_code == 500 and "error" in r.json(), r.text
    monkeypatch.undo()
    _assert_unchanged(env, disk, index)
    assert client.get("/healthz").status_code == 200


def test_a_good_file_next_to_a_bad_one_is_added_alone_and_a_good_reupload_replaces(env: Env,
                                                                                  client: httpx.Client) -> None:
    r = client.post("/api/documents", files=[("files", ("good.txt", b"The good file about lighthouses.\n", "text/plain")),
                                             ("files", ("bad.txt", b"\x00\x00\x00binary", "text/plain"))])
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["added", "failed"]
    assert (env.uploads / "good.txt").exists() and not (env.uploads / "bad.txt").exists()
    assert "good.txt" in env.index() and "bad.txt" not in env.index()
    assert not list(env.uploads.glob(STAGING_PREFIX + "*"))
    r = client.post("/api/documents", files=[("files", ("good.txt", b"The good file, second version.\n", "text/plain"))])
    assert r.json()["results"][0]["status"] == "updated", r.text
    assert (env.uploads / "good.txt").read_bytes() == b"The good file, second version.\n"
    doc_id = r.json()["results"][0]["doc_id"]
    assert client.delete(f"/api/documents/{doc_id}").status_code == 200
    assert not (env.uploads / "good.txt").exists()


def test_a_crashed_uploads_staging_folder_is_removed_at_start(env: Env, embedder: Embedder) -> None:
    stale = env.uploads / f"{STAGING_PREFIX}crashed"
    stale.mkdir()
    (stale / "bomb.docx").write_bytes(b"PK" + b"\x00" * 100)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = env.uploads / f"{STAGING_PREFIX}in-flight"
    fresh.mkdir()
    try:
        AssistantService(env.settings, embedder=embedder).close()
        assert not stale.exists()
        assert fresh.exists()  # another writer's upload in progress is left alone
    finally:
        fresh.rmdir()


# -- problem 6: truncated or mis-sized multipart bodies ------------------------------------------


def _raw_post(url: str, body: bytes, content_length: int, boundary: str) -> tuple[int, bytes]:
    """POST /api/documents over a plain socket with the Content-Length we choose; (status, body)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /api/documents HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        headers, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
    return int(headers.split(b" ", 2)[1]), rest[:length]


def test_truncated_or_mis_sized_multipart_is_refused_and_changes_nothing(env: Env, client: httpx.Client) -> None:
    disk, index = env.disk(), env.index()
    b = "hostileboundary12"
    part = (f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"notes.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + V2
    whole = part + f"\r\n--{b}--\r\n".encode()
    cases = {
        "no closing boundary": (part, len(part)),
        "part closed, body not": (part + f"\r\n--{b}\r\n".encode(), len(part) + len(b) + 6),
        "Content-Length shorter than the body": (whole, len(whole) - 40),
    }
    for what, (body, length) in cases.items():
        status, answer = _raw_post(env.url, body, length, b)
        assert status == 400, (what, status, answer)
        assert b"closing boundary" in answer and b"nothing was stored" in answer, (what, answer)
        _assert_unchanged(env, disk, index)
    status, answer = _raw_post(env.url, whole, len(whole), b)  # the same upload, whole: accepted
    assert status == 200 and b'"updated"' in answer, answer
    assert (env.uploads / "notes.txt").read_bytes() == V2
    back = whole.replace(V2, V1)
    status, answer = _raw_post(env.url, back, len(back), b)  # back to V1 for the other tests
    assert status == 200, answer
