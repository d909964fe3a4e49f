"""Hostile-input benchmark (issue 12): bombs and oddities through the CLI and the API.

    .venv/bin/python benchmarks/bench_hostile.py [--work DIR] [--keep]

Generates, at full size, the files of issue 12: .docx zip bombs (2 GB of <w:p> paragraphs in
about 7 MB; one 2 GB text node in about 2 MB; 200 MB of XML in under 1 MB), a .docx just under
the upload limit whose text passes ASSISTANT_MAX_TEXT_MB, a PDF whose one stream inflates to
1 GB, a 45 MB HTML page of tags, a 300 MB text file. Each goes through `assistant ingest`
(a child process: its peak RSS from wait4) and the ones that fit the upload limit also through
POST /api/documents of a real `assistant serve` (its peak RSS from /proc VmHWM, reset before each
case), plus hostile requests (a lone surrogate, a huge passage offset, a truncated multipart body).
Before and after each case the index is fingerprinted (generation, documents with their hashes,
the files in uploads/) and asked the same search; a case passes when nothing changed.

Targets: peak RSS under 1.5 GB for every case, each refused case answered in under 10 s, 0
changes to the index or uploads/ for refused cases. Default settings throughout (no limit lowered).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import bench_common  # noqa: F401  (offline switches, sys.path)
import httpx
from bench_common import PROJECT_ROOT, free_port, log, stop_server, wait_until_healthy

sys.path.append(str(PROJECT_ROOT / "tests"))  # the one-page PDF builder of the tests (tests/support.py)
from support import one_page_pdf  # noqa: E402

W = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MB = 1024 * 1024
RSS_TARGET_MB = 1536
REFUSE_TARGET_S = 10.0
QUESTION = "When does the ferry leave the north pier?"
CASES = {
    "docx: 2 GB of <w:p> (7 MB)": "bomb-paragraphs.docx", "docx: one 2 GB text node": "bomb-node.docx",
    "docx: 200 MB of XML (<1 MB)": "bomb-200mb.docx", "docx: 120 MB of text (62 MB)": "text-heavy.docx",
    "pdf: one stream inflating to 1 GB": "bomb-stream.pdf", "html: 45 MB of tags": "tags.html",
    "txt: 300 MB of text": "huge.txt",
}


# -- generating the files ---------------------------------------------------------------------


def _docx(path: Path, pieces: Callable[[], object], level: int = 9) -> Path:
    """A minimal .docx whose word/document.xml is streamed from `pieces()` (an iterator of bytes)."""
    ct = (b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
          b'<Default Extension="xml" ContentType="application/xml"/></Types>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        zf.writestr("[Content_Types].xml", ct)
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><w:document xmlns:w="' + W + b'"><w:body>')
            for piece in pieces():  # type: ignore[attr-defined]
                member.write(piece)
            member.write(b"</w:body></w:document>")
    return path


def make_files(folder: Path, write: bool = True) -> dict[str, Path]:
    """The files by case name (written when `write`; else only their names)."""
    if not write:
        return {name: folder / file for name, file in CASES.items()}
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    para = b"<w:p><w:r><w:t>bomb paragraph</w:t></w:r></w:p>" * 20_000  # ~0.9 MB

    def paragraphs(total: int) -> Callable[[], object]:
        return lambda: (para for _ in range(total // len(para)))

    files["docx: 2 GB of <w:p> (7 MB)"] = _docx(folder / "bomb-paragraphs.docx", paragraphs(2 * 1024 * MB))
    node = b"z" * MB
    files["docx: one 2 GB text node"] = _docx(
        folder / "bomb-node.docx",
        lambda: iter([b"<w:p><w:r><w:t>", *(node for _ in range(2048)), b"</w:t></w:r></w:p>"]))
    files["docx: 200 MB of XML (<1 MB)"] = _docx(folder / "bomb-200mb.docx", paragraphs(200 * MB))

    words = [f"w{i:x}".encode() for i in range(50_000)]
    import random

    rng = random.Random(12)

    def text_paragraphs() -> object:
        for _ in range(1500):  # ~120 MB of text in ~45 MB of .docx (random words barely compress)
            line = b" ".join(rng.choice(words) for _ in range(14_000))
            yield b"<w:p><w:r><w:t>" + line + b"</w:t></w:r></w:p>"

    files["docx: 120 MB of text (62 MB)"] = _docx(folder / "text-heavy.docx", text_paragraphs, level=1)

    content = (b"BT /F1 12 Tf 10 10 Td (" + b"a" * 200 + b") Tj ET\n") * (1024 * MB // 224)
    pdf = one_page_pdf(content, flate=True, media_box="0 0 200 200")
    del content
    (folder / "bomb-stream.pdf").write_bytes(pdf)
    files["pdf: one stream inflating to 1 GB"] = folder / "bomb-stream.pdf"

    with open(folder / "tags.html", "wb") as handle:
        handle.write(b"<html><body>")
        block = b"<p>ab</p>" * 100_000
        for _ in range(45 * MB // len(block)):
            handle.write(block)
        handle.write(b"</body></html>")
    files["html: 45 MB of tags"] = folder / "tags.html"

    with open(folder / "huge.txt", "wb") as handle:
        line = b"The ferry timetable is printed on the notice board by the harbour office.\n" * 10_000
        for _ in range(300 * MB // len(line)):
            handle.write(line)
    files["txt: 300 MB of text"] = folder / "huge.txt"
    return files


# -- measuring ----------------------------------------------------------------------------------


def fingerprint(index_dir: Path) -> str:
    """Generation, documents (source, hash, chunks) and the files in uploads/ (name, size)."""
    import sqlite3

    db = sqlite3.connect(f"file:{index_dir / 'index.sqlite'}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        docs = db.execute("SELECT source, content_hash, n_chunks FROM documents ORDER BY source").fetchall()
    finally:
        db.close()
    uploads = index_dir / "uploads"
    files = sorted((str(p.relative_to(uploads)), p.stat().st_size) for p in uploads.rglob("*") if p.is_file()) \
        if uploads.is_dir() else []
    return json.dumps([meta.get("generation"), docs, files])


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """(exit code, wall s, peak RSS MB, output) of one `assistant` child process."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=PROJECT_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return process.returncode, wall, usage.ru_maxrss / 1024, text


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def truncated_multipart(url: str) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    b = "benchboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"cut.txt\"\r\n\r\n"
            "The ferry leaves at noon, says this cut-off file.").encode()
    head = (f"POST /api/documents HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={b}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while piece := sock.recv(65536):
            data += piece
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


# -- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--generate", type=Path, metavar="DIR", help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.generate:
        files = make_files(args.generate)
        assert {p.name for p in files.values()} == set(CASES.values())
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_") or k == "ASSISTANT_ONNX_CACHE"}
    rows: list[dict[str, object]] = []
    try:
        log(f"generating the files in {work / 'files'} (in a child process: this one stays small, so the")
        log("children's peak RSS from wait4 is their own, not inherited from a big parent)")
        started = time.monotonic()
        subprocess.run([sys.executable, __file__, "--generate", str(work / "files")], check=True, env=env)
        files = make_files(work / "files", write=False)
        log(f"generated in {time.monotonic() - started:.0f} s: "
            + ", ".join(f"{p.name} {p.stat().st_size / MB:.1f} MB" for p in files.values()))

        index_dir = work / "index"
        docs = work / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.\n")
        (docs / "bakery.txt").write_text("The Lindqvist bakery on Canal Street sells 600 loaves on Saturdays.\n")
        code, _, _, out = run_cli(["ingest", str(docs), "--index-dir", str(index_dir), "--no-progress"], env)
        assert code == 0, out

        # CLI: every file through `assistant ingest`.
        for name, path in files.items():
            before = fingerprint(index_dir)
            code, wall, rss, out = run_cli(["ingest", str(path), "--index-dir", str(index_dir), "--no-progress"], env)
            reason = next((line.split(": ", 2)[-1] for line in out.splitlines() if line.strip().startswith("failed:")),
                          out.strip().splitlines()[-1] if out.strip() else "")
            rows.append({"via": "CLI", "case": name, "outcome": f"exit {code}: {reason}", "rss_mb": rss, "seconds": wall,
                         "refused": code != 0, "unchanged": fingerprint(index_dir) == before})
            log(f"CLI {name}: exit {code} in {wall:.1f} s, peak {rss:.0f} MB")

        # API: a real `assistant serve`.
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_log = open(work / "server.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--index-dir", str(index_dir),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=server_log,
                                  stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
        try:
            ready = wait_until_healthy(url, server, timeout=300, interval=0.5)
            assert ready, (work / "server.log").read_text()[-3000:]
            client = httpx.Client(base_url=url, timeout=600)
            limit = client.get("/api/info").json()["max_upload_mb"] * 1e6

            def search() -> list[str]:
                return [p["doc_id"] + str(p["start"]) for p in client.get("/api/search", params={"q": QUESTION}).json()["passages"]]

            def api_case(name: str, request: Callable[[], tuple[int, str]]) -> None:
                before, answer_before = fingerprint(index_dir), search()
                reset_peak(server.pid)
                started = time.monotonic()
                try:
                    status, text = request()
                except httpx.HTTPError as exc:
                    status, text = 0, f"{type(exc).__name__}: {exc}"
                wall = time.monotonic() - started
                rss = peak_mb(server.pid)
                alive = server.poll() is None and client.get("/healthz").status_code == 200
                try:
                    message = json.loads(text).get("error", text)
                except ValueError:
                    message = text
                unchanged = fingerprint(index_dir) == before and search() == answer_before
                rows.append({"via": "API", "case": name, "outcome": f"{status}: {message}"[:160] + ("" if alive else " (SERVER DOWN)"),
                             "rss_mb": rss, "seconds": wall, "refused": status >= 400, "unchanged": unchanged and alive})
                log(f"API {name}: {status} in {wall:.1f} s, server peak {rss:.0f} MB")

            def upload(path: Path) -> Callable[[], tuple[int, str]]:
                def send() -> tuple[int, str]:
                    with open(path, "rb") as handle:
                        r = client.post("/api/documents", files=[("files", (path.name, handle, "application/octet-stream"))])
                    return r.status_code, r.text
                return send

            for name, path in files.items():
                if path.stat().st_size < limit:
                    api_case(name, upload(path))
            headers = {"Content-Type": "application/json"}
            api_case("ask: lone surrogate", lambda: (lambda r: (r.status_code, r.text))(
                client.post("/api/ask", content='{"question": "abc \\ud800 def"}', headers=headers)))
            api_case("feedback: surrogate in history", lambda: (lambda r: (r.status_code, r.text))(
                client.post("/api/feedback", content='{"rating": 1, "question": "q", "history": ["\\udc00"]}',
                            headers=headers)))
            api_case("passage: start=10**19", lambda: (lambda r: (r.status_code, r.text))(
                client.get("/api/passage", params={"doc_id": "x", "start": 10**19, "end": 10**19 + 1})))
            api_case("upload: truncated multipart", lambda: truncated_multipart(url))
        finally:
            stop_server(server)
            server_log.close()
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("| via | case | outcome | peak RSS | wall | index and uploads/ unchanged |")
    print("|---|---|---|---|---|---|")
    ok = True
    for r in rows:
        good = float(r["rss_mb"]) < RSS_TARGET_MB and (not r["refused"] or float(r["seconds"]) < REFUSE_TARGET_S) \
            and (not r["refused"] or r["unchanged"])
        ok = ok and good
        outcome = str(r["outcome"]).replace("|", "/").replace("\n", " ")
        print(f"| {r['via']} | {r['case']} | {outcome} | {float(r['rss_mb']):.0f} MB | {float(r['seconds']):.1f} s | "
              f"{'yes' if r['unchanged'] else 'NO'}{'' if good else ' (target missed)'} |")
    print(f"\ntargets (peak RSS < {RSS_TARGET_MB} MB, refused < {REFUSE_TARGET_S:g} s, 0 changes): "
          f"{'all met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
