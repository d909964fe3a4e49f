"""Start-up shared by the benchmark scripts: offline switches, the project on sys.path (scripts run
from a checkout without installing), a timestamped log line, and waiting for and stopping a
child `assistant serve`. Import it before the project."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"
DEFAULT_BEIR = SHARED / "benchmarks" / "scifact"

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                      ("TOKENIZERS_PARALLELISM", "false"), ("GRADIO_ANALYTICS_ENABLED", "False")):
    os.environ.setdefault(_name, _value)
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], timeout: float, interval: float) -> bool:
    """Poll `url`/healthz every `interval` s: True once it answers 200, False when the server has
    exited or `timeout` seconds have passed."""
    import httpx  # here, not at the top: importing bench_common must come before the other imports

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(interval)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for the server; killed if it has not exited within 30 s."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
