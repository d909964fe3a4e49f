"""Documents through the API: list, upload (one or several files, refusals, hostile names, size
limits), remove. Tests that add documents remove them again, and compare listings before and after."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import DOCS, Served, doc_hashes, listing, multipart


def test_documents_lists_chunk_counts_and_stats(client: httpx.Client) -> None:
    body = listing(client)
    names = sorted(Path(d["source"]).name for d in body["documents"])
    assert names == sorted(DOCS)
    assert all(d["n_chunks"] >= 1 and d["id"] for d in body["documents"])
    assert body["stats"]["documents"] == len(DOCS)
    assert body["stats"]["chunks"] == sum(d["n_chunks"] for d in body["documents"])


def test_upload_then_ask_then_delete(client: httpx.Client, open_server: Served) -> None:
    before = doc_hashes(client)
    text = b"Mount Halvard Volcano\n\nMount Halvard last erupted in 1783 and its crater lake is 90 metres deep.\n"
    r = client.post("/api/documents", files=[("files", ("volcano.txt", text, "text/plain"))])
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "added" and result["filename"] == "volcano.txt" and result["chunks"] >= 1
    assert (open_server.uploads / "volcano.txt").read_bytes() == text

    answer = client.post("/api/ask", json={"question": "When did Mount Halvard last erupt?"}).json()
    assert "1783" in answer["answer"] and answer["citations"][0]["doc_id"] == result["doc_id"]

    r = client.delete(f"/api/documents/{result['doc_id']}")
    assert r.status_code == 200 and r.json() == {"removed": result["doc_id"]}
    assert doc_hashes(client) == before
    assert not (open_server.uploads / "volcano.txt").exists()
    answer = client.post("/api/ask", json={"question": "When did Mount Halvard last erupt?"}).json()
    assert all(c["doc_id"] != result["doc_id"] for c in answer["citations"])
    r = client.delete(f"/api/documents/{result['doc_id']}")
    assert r.status_code == 404 and result["doc_id"] in r.json()["error"]


def test_upload_several_files_in_one_request(client: httpx.Client, pdf_with_text: Any) -> None:
    before = doc_hashes(client)
    pdf = pdf_with_text(["Quarterly report", "Revenue grew by 12 percent in the third quarter."])
    r = client.post("/api/documents", files=[
        ("files", ("report.pdf", pdf, "application/pdf")),
        ("files", ("notes.md", b"# Notes\n\nThe meeting moved to Thursday at noon.\n", "text/markdown")),
    ])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["filename"], x["status"]) for x in results] == [("report.pdf", "added"), ("notes.md", "added")]
    answer = client.post("/api/ask", json={"question": "By how much did revenue grow in the third quarter?"}).json()
    assert "12 percent" in answer["answer"]
    for x in results:
        assert client.delete(f"/api/documents/{x['doc_id']}").status_code == 200
    assert doc_hashes(client) == before


def test_unsupported_type_is_415_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("notes.txt", b"fine text", "text/plain")),
                                             ("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream"))])
    assert r.status_code == 415
    error = r.json()["error"]
    assert "tool.exe" in error and ".pdf" in error and ".docx" in error and ".txt" in error
    assert doc_hashes(client) == before
    assert not (open_server.uploads / "notes.txt").exists() and not (open_server.uploads / "tool.exe").exists()


def test_unparseable_file_is_reported_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))])
    assert r.status_code == 422
    body = r.json()
    assert "broken.pdf" in body["error"] and body["results"][0]["status"] == "failed" and body["results"][0]["reason"]
    assert doc_hashes(client) == before
    assert not (open_server.uploads / "broken.pdf").exists()


def test_a_broken_new_version_of_an_upload_keeps_the_old_one(client: httpx.Client, open_server: Served,
                                                             pdf_with_text: Any) -> None:
    good = pdf_with_text(["Ferry timetable", "The first ferry leaves the harbour at 06:40 every weekday."])
    r = client.post("/api/documents", files=[("files", ("ferry.pdf", good, "application/pdf"))])
    assert r.status_code == 200, r.text
    doc_id = r.json()["results"][0]["doc_id"]
    before = doc_hashes(client)
    r = client.post("/api/documents", files=[("files", ("ferry.pdf", b"%PDF-1.4 garbage", "application/pdf"))])
    assert r.status_code == 422
    assert doc_hashes(client) == before
    assert (open_server.uploads / "ferry.pdf").read_bytes() == good
    answer = client.post("/api/ask", json={"question": "When does the first ferry leave the harbour?"}).json()
    assert "06:40" in answer["answer"]
    assert client.delete(f"/api/documents/{doc_id}").status_code == 200


@pytest.mark.parametrize("name, stored", [("../../escape.txt", "escape.txt"), ("..\\..\\win.txt", "win.txt"),
                                          ("/etc/cron.d/job.txt", "job.txt")])
def test_path_traversal_file_names_are_sanitized(client: httpx.Client, open_server: Served,
                                                 name: str, stored: str) -> None:
    body, content_type = multipart([(name, b"Sanitizing test document about the harbour crane.\n")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["filename"] == stored and result["status"] == "added"
    assert Path(result["source"]).parent == open_server.uploads.resolve()
    assert (open_server.uploads / stored).exists()
    assert not (open_server.index_dir.parent / stored).exists() and not (open_server.index_dir / stored).exists()
    assert client.delete(f"/api/documents/{result['doc_id']}").status_code == 200


def test_unusable_file_name_is_400(client: httpx.Client) -> None:
    body, content_type = multipart([("..", b"text")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "file name" in r.json()["error"]


def test_upload_request_errors(client: httpx.Client) -> None:
    r = client.post("/api/documents", json={"files": []})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/api/documents", data={"comment": "no file here"}, files=[])
    assert r.status_code in (400, 415)
    body, content_type = multipart([])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "no files" in r.json()["error"]
    body, content_type = multipart([("same.txt", b"one"), ("same.txt", b"two")])
    r = client.post("/api/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "same.txt" in r.json()["error"]


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(open_server: Served) -> None:
    port = int(open_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                     b"Content-Length: 10000000000\r\n\r\n")  # 10 GB announced, nothing sent
        reply = b""
        while b"}" not in reply:  # the whole JSON error, however the segments arrive
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    status_line, _, rest = reply.decode("latin-1").partition("\r\n")
    assert " 413 " in status_line
    assert "ASSISTANT_MAX_UPLOAD_MB" in rest and "10000.0 MB" in rest


def test_actual_size_over_the_limit_is_413_and_changes_nothing(client: httpx.Client, open_server: Served) -> None:
    before = doc_hashes(client)
    big = (b"A line of filler text for the size limit test.\n" * 3000)[: 120_000]  # > 52 KB limit
    body, content_type = multipart([("big.txt", big)])

    def chunked() -> Iterator[bytes]:  # no Content-Length: only the real size can be checked
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = client.post("/api/documents", content=chunked(), headers={"Content-Type": content_type})
    assert r.status_code == 413
    assert "big.txt" in r.json()["error"] and "ASSISTANT_MAX_UPLOAD_MB" in r.json()["error"]
    assert doc_hashes(client) == before and not (open_server.uploads / "big.txt").exists()


def test_delete_unknown_document_is_404(client: httpx.Client) -> None:
    r = client.delete("/api/documents/ffffffffffffffff")
    assert r.status_code == 404 and "GET /api/documents" in r.json()["error"]
    r = client.delete("/api/documents/README.md")  # ids only, never paths
    assert r.status_code == 404
