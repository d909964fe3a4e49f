"""The built-in demo (`make run` indexes README.md, ARCHITECTURE.md and docs/): the questions a new
user tries first get sensible cited answers, and a question the documents cannot answer abstains."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import shared_embedder

from assistant.ingest import Ingestor
from assistant.pipeline import Assistant
from assistant.settings import Settings
from assistant.ui import render

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["rules", "learned"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The demo index, answered by the default answerer ("rules") and by the learned one."""
    settings = Settings(index_dir=tmp_path_factory.mktemp("demo-index"), answerer=request.param)
    paths = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "docs"]
    report = Ingestor(settings, shared_embedder()).ingest_paths(paths, progress=False)
    assert not report.failed, report.summary()
    bot = Assistant(settings, shared_embedder())
    yield bot
    bot.close()


def test_every_example_question_the_ui_offers_gets_a_cited_answer(demo: Assistant) -> None:
    docs = demo.store.documents()
    questions = render.example_questions([d.title for d in docs])
    assert len(questions) >= 2
    for question in questions:
        result = demo.ask(question)
        assert not result.abstained, question
        assert result.citations, question
        for c in result.citations:
            assert Path(c.source).read_text(encoding="utf-8")[c.start : c.end] == c.quote
        assert "|" not in result.answer and "**" not in result.answer, result.answer


def test_default_chunk_size_is_answered_from_the_readme(demo: Assistant) -> None:
    result = demo.ask("What is the default chunk size?")
    assert not result.abstained
    assert "160" in result.answer
    assert Path(result.citations[0].source).name == "README.md"
    # the settings table starts in an earlier chunk: the row is still read with its header
    assert "setting: CHUNK_TOKENS; default: 160" in result.answer, result.answer


def test_who_wrote_this_abstains(demo: Assistant) -> None:
    result = demo.ask("Who wrote this?")
    assert result.abstained, result.answer
