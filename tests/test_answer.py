"""Asking questions end to end on a small corpus: real model, real FAISS, real files."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import assistant_fixture

from assistant.pipeline import Assistant

DOCS = {
    "volcano.md": (
        "# Mount Ardent\n\nMount Ardent is a stratovolcano on the island of Keld. It last erupted in 1912, "
        "when ash fell on the harbour town of Vessa for three days.\n\nThe observatory on the north rim "
        "was founded by geologist Mara Ilves in 1931. She wrote that the crater lake turns green before "
        "every eruption.\n"
    ),
    "bakery.txt": (
        "The Lindqvist bakery opened in 1988 on Canal Street.\n"
        "Its rye bread uses a sourdough starter that is forty years old.\n"
        "The bakery sells about 600 loaves every Saturday.\n"
    ),
}


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    yield from assistant_fixture(tmp_path_factory, DOCS)


def test_answer_quotes_the_right_sentence_and_the_span_is_exact(assistant: Assistant) -> None:
    result = assistant.ask("When did Mount Ardent last erupt?")
    assert not result.abstained
    assert "1912" in result.answer
    assert result.answer.rstrip().endswith("[1]")
    citation = result.citations[0]
    assert Path(citation.source).name == "volcano.md"
    text = Path(citation.source).read_text(encoding="utf-8")
    assert text[citation.start : citation.end] == citation.quote
    assert "1912" in citation.quote


def test_citation_numbers_map_to_citations(assistant: Assistant) -> None:
    result = assistant.ask("How many loaves does the bakery sell on Saturdays?")
    assert "600" in result.answer
    import re

    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    assert numbers == {c.n for c in result.citations}
    assert all(Path(c.source).name == "bakery.txt" for c in result.citations)


def test_unrelated_question_abstains(assistant: Assistant) -> None:
    result = assistant.ask("What is the boiling point of liquid nitrogen?")
    assert result.abstained
    assert result.citations == []
    assert "could not find" in result.answer.lower()


def test_follow_up_uses_history(assistant: Assistant) -> None:
    alone = assistant.ask("Who founded it?")
    follow = assistant.ask("Who founded it?", history=["Tell me about the observatory on Mount Ardent"])
    assert "observatory" in follow.standalone_question.lower()
    assert not follow.abstained
    assert "Mara Ilves" in follow.answer
    assert alone.standalone_question == "Who founded it?"


def test_json_shape_is_stable(assistant: Assistant) -> None:
    data = assistant.ask("How old is the sourdough starter?").to_dict()
    assert set(data) == {"question", "standalone_question", "answer", "abstained", "confidence", "citations",
                         "passages", "timings",
                         # who answered and what the citation verifier did (generative backends)
                         "backend", "model", "fallback_reason", "warnings", "unsupported", "dropped_citations",
                         "revised", "debug"}
    assert data["backend"] == "extractive" and data["fallback_reason"] is None and data["revised"] is False
    assert {"n", "chunk_id", "doc_id", "title", "source", "start", "end", "quote"} <= set(data["citations"][0])
    assert {"chunk_id", "score", "dense_score", "bm25_score", "text", "start", "end"} <= set(data["passages"][0])
    assert {"embed_query_ms", "dense_ms", "bm25_ms", "answer_ms", "total_ms"} <= set(data["timings"])


def test_search_modes_rank_the_matching_document_first(assistant: Assistant) -> None:
    for mode in ("hybrid", "dense", "bm25"):
        result = assistant.search("sourdough rye bread", top_k=3, mode=mode)
        assert Path(result.passages[0].source).name == "bakery.txt", mode
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        assistant.search("x", mode="fuzzy")
