"""Acceptance on the user's example corpus and golden set (skips without ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import fresh_postgres_url, shared_embedder, shared_path

from assistant.evaluation.golden import read_golden
from assistant.evaluation.run import evaluate
from assistant.ingest import Ingestor
from assistant.pipeline import Assistant
from assistant.settings import Settings


@pytest.fixture(scope="module", params=["local", "postgres"])
def news_assistant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The news corpus indexed in the local store and in PostgreSQL: both must meet the bar."""
    corpus = shared_path("corpus", "news")
    store = fresh_postgres_url() if request.param == "postgres" else ""
    settings = Settings(index_dir=tmp_path_factory.mktemp("news-index"), store=store)
    report = Ingestor(settings, shared_embedder()).ingest_paths([corpus], progress=False)
    assert not report.failed
    bot = Assistant(settings, shared_embedder())
    yield bot
    bot.close()


def test_golden_set_meets_the_bar(news_assistant: Assistant) -> None:
    items, problems = read_golden(shared_path("golden", "news_golden.jsonl"))
    assert not problems
    report = evaluate(news_assistant, items)
    t = report.totals
    print(report.table())
    print(report.summary())
    assert t["correct"] >= 18
    assert t["items_with_good_citation"] >= 18
    assert t["citation_precision"] >= 0.9
    assert t["abstained_unanswerable"] == t["unanswerable"] == 4
    assert t["false_abstentions"] <= 2


def test_ninety_percent_question_cites_the_first_article(news_assistant: Assistant) -> None:
    result = news_assistant.ask("What did Zelensky say about the 90% figure?")
    assert not result.abstained
    assert "90 per cent" in result.answer
    assert Path(result.citations[0].source).name.startswith("000_")
    source_text = Path(result.citations[0].source).read_text(encoding="utf-8")
    c = result.citations[0]
    assert source_text[c.start : c.end] == c.quote
