"""Starting the server: 503 while the index loads or after it failed to, refusing to listen on a
public address without a key, and `assistant serve`, the real entry point."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_support import ui_available
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.service import AssistantService
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig, check_exposure

ROOT = Path(__file__).resolve().parents[1]


# -- loading -----------------------------------------------------------------------------------


def test_healthz_and_api_answer_503_while_loading_then_200(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    service = AssistantService(settings, embedder=embedder)
    gate = threading.Event()
    real_warm_up = service.warm_up

    def slow_warm_up() -> None:
        assert gate.wait(30)
        real_warm_up()

    service.warm_up = slow_warm_up  # type: ignore[method-assign]
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            r = httpx.get(url + "/healthz")
            assert r.status_code == 503 and r.json() == {"status": "loading"}
            r = httpx.post(url + "/api/ask", json={"question": "anything?"})
            assert r.status_code == 503 and "loading" in r.json()["error"]
            gate.set()
            wait_ready(url, timeout=30)
            assert httpx.get(url + "/healthz").json()["documents"] == 0
            assert httpx.post(url + "/api/ask", json={"question": "anything?"}).json()["abstained"] is True
    finally:
        gate.set()
        service.close()


def test_a_failed_load_keeps_answering_503_with_the_reason(tmp_path: Path, embedder: Embedder) -> None:
    service = AssistantService(Settings(index_dir=tmp_path / "index"), embedder=embedder)

    def broken() -> None:
        raise RuntimeError("index file unreadable")

    service.warm_up = broken  # type: ignore[method-assign]
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            deadline = time.monotonic() + 10
            while httpx.get(url + "/healthz").json().get("status") != "error" and time.monotonic() < deadline:
                time.sleep(0.05)
            r = httpx.get(url + "/healthz")
            assert r.status_code == 503 and "failed to load" in r.json()["error"]
            assert "unreadable" not in r.text  # no details on the open endpoint
            r = httpx.get(url + "/api/documents")
            assert r.status_code == 503 and "index file unreadable" in r.json()["error"]
    finally:
        service.close()


# -- exposure ----------------------------------------------------------------------------------


def test_exposing_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="ASSISTANT_API_KEY"):
        check_exposure(ServerConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="insecure-no-auth"):
        check_exposure(ServerConfig(host="192.168.1.20"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(ServerConfig(host=host))
    check_exposure(ServerConfig(host="0.0.0.0", api_key="k" * 20))
    check_exposure(ServerConfig(host="0.0.0.0", insecure_no_auth=True))


def test_cli_serve_refuses_a_public_host_without_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.cli import main

    monkeypatch.delenv("ASSISTANT_API_KEY", raising=False)
    started = time.perf_counter()
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--host", "0.0.0.0"]) == 2
    assert "ASSISTANT_API_KEY" in capsys.readouterr().err
    assert time.perf_counter() - started < 5 and not (tmp_path / "i").exists()  # refused before loading anything
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--frame-ancestors", "a;b"]) == 2
    assert "frame ancestor" in capsys.readouterr().err
    assert main(["serve", "--index-dir", str(tmp_path / "i"), "--allow-origin", "portal.example.com"]) == 2
    assert "https://" in capsys.readouterr().err


# -- `assistant serve`, the real entry point ---------------------------------------------------


def test_cli_serve_prints_the_urls_and_serves(tmp_path: Path, docs_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("ASSISTANT_API_KEY", None)
    index = tmp_path / "index"
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "--index-dir", str(index), "serve",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Embed page:"):
                break
        output = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"API docs: {base}/docs" in output and f"Embed page: {base}/embed" in output, output
        assert ("Chat UI: " + base + "/ui/" in output) == ui_available()
        assert "listening only on loopback" in output and "ASSISTANT_API_KEY" in output
        wait_ready(base, timeout=60)
        assert httpx.get(base + "/api/documents").json()["stats"]["documents"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, "".join(lines)
