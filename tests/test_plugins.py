"""Plugins: the built-ins come through the same hooks as a third-party package, and a package that
declares an `assistant` entry point (tests/plugin_csv: a .csv loader) works without any core edit."""

from __future__ import annotations

import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant import plugins
from assistant.cli import build_parser
from assistant.embed import Embedder, resolve_model_path
from assistant.index import open_store
from assistant.ingest import Ingestor
from assistant.llm import answer_backends, configured_backends, get_backend
from assistant.loaders import LoadError, is_supported, load, supported_suffixes
from assistant.pipeline import Assistant
from assistant.settings import Settings

PLUGIN_PROJECT = Path(__file__).resolve().parent / "plugin_csv"
PLUGIN_MODULE = "assistant_csv_plugin"


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    """Every test starts from the built-ins and entry points, and leaves nothing registered behind."""
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def installed_csv_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tests/plugin_csv installed the way pip leaves it: the package and a dist-info whose
    entry_points.txt is the project's own [project.entry-points] table, in a folder on sys.path."""
    project = tomllib.loads((PLUGIN_PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    site = tmp_path / "site-packages"
    shutil.copytree(PLUGIN_PROJECT / PLUGIN_MODULE, site / PLUGIN_MODULE)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
                                   encoding="utf-8")
    points = "".join(f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items())
                     for group, entries in project["entry-points"].items())
    (info / "entry_points.txt").write_text(points, encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
    plugins.reset()
    yield site
    sys.modules.pop(PLUGIN_MODULE, None)


def test_builtins_are_plugins_like_any_other() -> None:
    assert set(plugins.DEFAULT_PLUGINS) <= {name for name, _ in plugins.manager().list_name_plugin()}
    assert supported_suffixes() == [".docx", ".htm", ".html", ".markdown", ".md", ".pdf", ".text", ".txt"]
    assert "all-MiniLM-L6-v2" in plugins.embedding_models().names()
    assert plugins.chat_backends().names() == ["openai", "local"]
    assert answer_backends() == ["extractive", "openai", "local"]
    assert {"", "postgresql", "postgres"} <= set(plugins.stores().names())


def test_unknown_names_say_what_is_registered(tmp_path: Path) -> None:
    sheet = tmp_path / "cities.csv"
    sheet.write_text("city,country\nOslo,Norway\n", encoding="utf-8")
    assert not is_supported(sheet)  # nothing installed provides .csv
    with pytest.raises(LoadError, match=r"unsupported file type \.csv; supported: .*\.txt.*install a plugin"):
        load(sheet)
    with pytest.raises(ValueError, match=r"unknown embedding model 'nope'.*all-MiniLM-L6-v2.*install a plugin"):
        resolve_model_path("nope")
    with pytest.raises(ValueError, match=r"unknown LLM backend 'nope'; use one of openai, local"):
        get_backend("nope", Settings())
    with pytest.raises(ValueError, match=r"not understood.*registered: postgresql://, postgres://"):
        open_store(Settings(index_dir=tmp_path / "index", store="mongodb://host/db"), "m", 3)
    with pytest.raises(plugins.NotRegistered, match=r"no loader for '\.csv'; known: \.txt"):
        plugins.loaders().get(".csv")


def test_csv_plugin_from_an_entry_point_is_ingested_and_searched(installed_csv_plugin: Path, tmp_path: Path,
                                                                 embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour_tides.csv").write_text(
        "harbour,high tide,tidal range\nVessa,06:40,3.2 metres\nKorsnes,07:15,1.1 metres\n", encoding="utf-8")
    (docs / "notes.txt").write_text("The ferry to Korsnes leaves every morning at nine.\n", encoding="utf-8")
    assert is_supported(docs / "harbour_tides.csv")
    assert "csv" in {name for name, _ in plugins.manager().list_name_plugin()}

    settings = Settings(index_dir=tmp_path / "index")
    report = Ingestor(settings, embedder=embedder).ingest_paths([docs], progress=False)
    assert report.count("added") == 2, report.summary()
    with Assistant(settings, embedder) as bot:
        top = bot.search("What is the tidal range at Vessa?", top_k=1).passages[0]
        assert top.source.endswith("harbour_tides.csv") and top.title == "harbour tides"
        assert "| Vessa | 06:40 | 3.2 metres |" in top.text


def test_a_plugin_registered_in_process_provides_a_backend_and_a_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    opened: list[tuple[str, int]] = []

    class Echo:
        name = "echo"

    class Extras:
        @plugins.hookimpl
        def register_chat_backends(self, register: Callable[..., None]) -> None:
            register("echo", lambda settings: Echo())

        @plugins.hookimpl
        def register_stores(self, register: Callable[..., None]) -> None:
            register("memory", lambda settings, model, dim, writable: opened.append((model, dim)) or "a store")

    plugins.register(Extras())
    assert answer_backends() == ["extractive", "openai", "local", "echo"]
    assert isinstance(get_backend("echo", Settings()), Echo)
    assert configured_backends(Settings()) == ["echo"]  # the built-ins need an endpoint or a GGUF file
    assert open_store(Settings(store="memory://x"), "model", 3) == "a store" and opened == [("model", 3)]
    args = build_parser().parse_args(["ask", "--backend", "echo", "a question"])  # the CLI accepts it too
    assert args.backend == "echo"
    plugins.reset()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "--backend", "echo", "a question"])
    assert "echo" not in answer_backends()
