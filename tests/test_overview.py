"""Questions about what a document or the collection is about: recognised, answered with leads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assistant.embed import Embedder
from assistant.index import ChunkRecord, DocumentRecord
from assistant.ingest import Ingestor
from assistant.overview import AboutQuestion, about_target, answer_about
from assistant.pipeline import Assistant
from assistant.settings import Settings
from assistant.types import Passage


@pytest.mark.parametrize(("question", "target"), [
    ("What is the README about?", "the README"),
    ("What is \u201cHarbour notes\u201d about?", "Harbour notes"),
    ('What is the article "Tide tables" about?', "Tide tables"),
    ("What's Harbour notes about?", "Harbour notes"),
    ("What\u2019s ARCHITECTURE.md about ?", "ARCHITECTURE.md"),
    ("what is chunking all about", "chunking"),
    ("Summarize the harbour report.", "the harbour report"),
    ("Can you summarise Harbour notes, please?", "Harbour notes"),
    ("Give me a short summary of the tide tables", "the tide tables"),
    ("What is the main topic of ARCHITECTURE.md?", "ARCHITECTURE.md"),
    ("What are these documents about?", ""),
    ("What is this collection about?", ""),
    ("What do the documents cover?", ""),
    ("What is it all about?", ""),
    ("Summarize", ""),
    ("Give me an overview.", ""),
    ("What's in these documents?", ""),
])
def test_about_questions_are_recognised(question: str, target: str) -> None:
    about = about_target(question)
    assert about is not None
    assert about.target == target
    assert about.collection == (target == "")


@pytest.mark.parametrize("question", [
    "What is the default chunk size?",
    "What did Zelensky say about the 90% figure?",
    "What did the mayor say about the harbour?",
    "What are the rules about parking?",
    "How about the ferry?",
    "What do you know about ferries?",
    "What does the chunker do?",
    "Summary statistics for 2020?",
    "Where is the harbour?",
    "Tell me about the harbour",
])
def test_other_questions_are_not_about_questions(question: str) -> None:
    assert about_target(question) is None


def test_strict_wordings_need_a_title_match() -> None:
    assert about_target("What does the warranty cover?") == AboutQuestion("the warranty", strict=True)
    assert about_target("What was the meeting about?") == AboutQuestion("the meeting", strict=True)


# -- answer_about on a small in-memory store ------------------------------------------------


@dataclass
class FakeStore:
    texts: dict[str, tuple[str, str]]  # doc_id -> (title, text)
    chunk_chars: int = 60
    calls: list[tuple[str, int, int | None]] = field(default_factory=list)

    def documents(self) -> list[DocumentRecord]:
        return [DocumentRecord(d, f"/docs/{d}.md", t, "h", len(x), 1, 0.0) for d, (t, x) in self.texts.items()]

    def document_chunks(self, doc_id: str, start: int = 0, end: int | None = None) -> list[ChunkRecord]:
        self.calls.append((doc_id, start, end))
        title, text = self.texts[doc_id]
        out = []
        cuts = [0, *[i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)], len(text)]
        pieces = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]  # one chunk a line: sentence-aligned
        for k, (a, b) in enumerate(pieces):
            if b > start and (end is None or a < end):
                out.append(ChunkRecord(hash((doc_id, k)) % 10_000, doc_id, k, a, b, 10, text[a:b], title,
                                       f"/docs/{doc_id}.md"))
        return out


HARBOUR = "# Harbour notes\n\nThe harbour of Vessa opened in 1880.\nFerries leave at 07:40.\nMore text.\n"
BAKERY = "# Bakery\nThe Lindqvist bakery sells rye bread and a great many other very fine things every single day " \
         "of the week, from early morning until late in the evening, to everyone in town.\nIt opened in 1988.\n"


def test_answer_about_a_titled_document_quotes_its_lead_with_exact_spans() -> None:
    store = FakeStore({"dh": ("Harbour notes", HARBOUR), "db": ("Bakery", BAKERY)})
    answer = answer_about(about_target("What is \u201charbour NOTES\u201d about?"), store, [])  # type: ignore[arg-type]
    assert answer is not None and not answer.abstained
    assert answer.text == "The harbour of Vessa opened in 1880. [1] Ferries leave at 07:40. [2]"
    assert [(c.n, c.doc_id) for c in answer.citations] == [(1, "dh"), (2, "dh")]
    for c in answer.citations:
        assert HARBOUR[c.start : c.end] == c.quote
    assert store.calls[0] == ("dh", 0, 2)
    # A long first unit is the whole lead.
    answer = answer_about(about_target("What is bakery about?"), store, [])  # type: ignore[arg-type]
    assert answer is not None and len(answer.citations) == 1 and answer.citations[0].quote.startswith("The Lindqvist")


def test_answer_about_the_collection_and_retrieval_fallback_and_none() -> None:
    store = FakeStore({"dh": ("Harbour notes", HARBOUR), "db": ("Bakery", BAKERY)})
    answer = answer_about(about_target("What are these documents about?"), store, [])  # type: ignore[arg-type]
    assert answer is not None
    assert [c.doc_id for c in answer.citations] == ["dh", "db"]  # one lead each
    assert answer.text.endswith("[2]") and "[1]" in answer.text

    top = Passage(1, "dh", "Harbour notes", "/docs/dh.md", 40, 64, "Ferries leave at 07:40.\n", 0.8)
    answer = answer_about(about_target("What is the ferry timetable about?"), store, [top])  # type: ignore[arg-type]
    assert answer is None  # "timetable" is not in the top passage
    answer = answer_about(about_target("What are ferries about?"), store, [top])  # type: ignore[arg-type]
    assert answer is not None and answer.citations[0].doc_id == "dh" and answer.confidence == 0.8
    strict = answer_about(about_target("What do ferries cover?"), store, [top])  # type: ignore[arg-type]
    assert strict is None  # strict wording: a title match only
    assert answer_about(None, store, [top]) is None  # type: ignore[arg-type]
    assert answer_about(about_target("What is X about?"), FakeStore({}), []) is None  # type: ignore[arg-type]


# -- end to end: ingest two Markdown documents with the real model, ask --------------------


DOCS = {
    "volcano.md": "# Mount Ardent survey\n\nMount Ardent is a stratovolcano on the island of Kell.\n"
                  "It last erupted in 1912.\n\n## Monitoring\n\n- Seismometers ring the summit.\n",
    "bakery.md": "Lindqvist bakery\n================\n\nThe Lindqvist bakery has baked rye bread on Canal Street "
                 "since 1988.\n\n| Loaf | Price |\n|---|---|\n| Rye | 4 euros |\n",
}


def test_about_questions_end_to_end(tmp_path: Path, settings: Settings, ingestor: Ingestor,
                                    embedder: Embedder) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    report = ingestor.ingest_paths([root], progress=False)
    assert report.count("added") == 2, report.summary()
    with Assistant(settings, embedder) as bot:
        result = bot.ask("What is \u201cMount Ardent survey\u201d about?")
        assert not result.abstained
        assert [Path(c.source).name for c in result.citations] == ["volcano.md", "volcano.md"]
        assert result.answer == "Mount Ardent is a stratovolcano on the island of Kell. [1] It last erupted in 1912. [2]"
        for c in result.citations:
            assert (root / "volcano.md").read_text(encoding="utf-8")[c.start : c.end] == c.quote

        result = bot.ask("What are these documents about?")
        assert not result.abstained
        assert sorted(Path(c.source).name for c in result.citations) == ["bakery.md", "volcano.md"]
        assert "The Lindqvist bakery has baked rye bread on Canal Street since 1988." in result.answer
        assert "Mount Ardent is a stratovolcano on the island of Kell." in result.answer
        for c in result.citations:
            assert (root / Path(c.source).name).read_text(encoding="utf-8")[c.start : c.end] == c.quote
