"""SQuAD v1.1/v2.0 JSON as golden items: the reader, `golden import` and `eval --format squad`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.cli import main
from assistant.evaluation.golden import read_golden
from assistant.evaluation.squad import looks_like_squad, read_items, read_squad

HARBOUR = ("The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier. "
           "The new pier is 420 metres long. It was designed by engineer Tove Rask.")
RACE = "Mira Holt won the 2020 coastal race. She finished in four hours."


def _answer(context: str, text: str) -> dict[str, Any]:
    return {"text": text, "answer_start": context.index(text)}


def _squad() -> dict[str, Any]:
    return {"version": "v2.0", "data": [
        {"title": "Vessa Harbour", "paragraphs": [
            {"context": HARBOUR, "qas": [
                {"id": "q1", "question": "When was the harbour rebuilt?", "is_impossible": False,
                 "answers": [_answer(HARBOUR, "1954"), _answer(HARBOUR, "1954"), _answer(HARBOUR, "in 1954")]},
                {"id": "q2", "question": "Who paid for the pier?", "is_impossible": True, "answers": [],
                 "plausible_answers": [_answer(HARBOUR, "Tove Rask")]},
                {"id": "q3", "question": "", "answers": []},  # malformed: no question
                {"id": "q4", "question": "How long is the pier?", "is_impossible": False,
                 "answers": [{"text": "420 metres", "answer_start": 3}]},  # start does not point at the text
                {"id": "q5", "question": "How long?", "answers": [{"text": "420 metres", "answer_start": 900}]},
                {"id": "q6", "question": "What is long and designed?", "is_impossible": False,
                 "answers": [_answer(HARBOUR, "long. It was designed")]},  # spans two sentences
            ]},
            {"context": "", "qas": []},  # no context: paragraph skipped
        ]},
        "not an article",
        {"title": "Coastal  race", "paragraphs": [
            {"context": RACE, "qas": [
                {"id": "q1", "question": "Duplicate id?", "answers": [_answer(RACE, "Mira Holt")]},
                {"id": 7, "question": "Who won the 2020 coastal race?", "answers": [_answer(RACE, "Mira Holt")]},
            ]},
        ]},
        {"title": "Vessa Harbour", "paragraphs": [{"context": "A second article with the same title.", "qas": []}]},
    ]}


@pytest.fixture()
def squad_file(tmp_path: Path) -> Path:
    path = tmp_path / "squad-v2.json"
    path.write_text(json.dumps(_squad()), encoding="utf-8")
    return path


def test_reader_maps_answerable_and_impossible_questions(squad_file: Path) -> None:
    squad = read_squad(squad_file)
    by_id = {i.id: i for i in squad.items}
    assert list(by_id) == ["q1", "q2", "q6", "7"]

    q1 = by_id["q1"]
    assert q1.answerable and q1.answers == ["1954", "in 1954"]  # distinct texts
    assert q1.evidence == ["The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier."]
    assert q1.sources == ["Vessa Harbour"] and q1.history == []

    q2 = by_id["q2"]
    assert not q2.answerable and q2.answers == [] and q2.evidence == []  # plausible answers ignored

    assert by_id["q6"].evidence == ["The new pier is 420 metres long. It was designed by engineer Tove Rask."]
    assert by_id["7"].sources == ["Coastal race"]  # whitespace in titles collapsed
    assert by_id["7"].evidence == ["Mira Holt won the 2020 coastal race."]
    assert [i.line for i in squad.items] == [1, 2, 6, 8]  # ordinal of the question in the file


def test_reader_names_file_and_field_of_each_skipped_item(squad_file: Path) -> None:
    problems = read_squad(squad_file).problems
    assert len(problems) == 6
    assert all(p.startswith(f"{squad_file}: data[") for p in problems)
    text = "\n".join(problems)
    assert 'data[0].paragraphs[0].qas[2]: field "question" is missing or empty; question skipped' in text
    assert "data[0].paragraphs[0].qas[3].answers[0]: answer_start 3 does not point at the answer text" in text
    assert "data[0].paragraphs[0].qas[4].answers[0]: answer_start 900 is past the end of the context" in text
    assert 'data[0].paragraphs[1]: field "context" is missing or empty; paragraph skipped' in text
    assert "data[1]: an article must be an object; article skipped" in text
    assert 'data[2].paragraphs[0].qas[0]: duplicate id "q1"; question skipped' in text


def test_reader_articles_keep_their_paragraphs(squad_file: Path) -> None:
    articles = read_squad(squad_file).articles
    assert [(a.title, len(a.paragraphs)) for a in articles] == [("Vessa Harbour", 1), ("Coastal race", 1),
                                                                ("Vessa Harbour", 1)]


def test_squad_v1_without_is_impossible(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Race", "paragraphs": [
        {"context": RACE, "qas": [{"id": "a", "question": "Who won?", "answers": [_answer(RACE, "Mira Holt")]}]}]}]}))
    items = read_squad(path).items
    assert len(items) == 1 and items[0].answerable and items[0].answers == ["Mira Holt"]


def test_not_squad_bad_json_and_too_big_are_errors_naming_the_file(tmp_path: Path, squad_file: Path) -> None:
    wrong = tmp_path / "list.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json: not a SQuAD file"):
        read_squad(wrong)
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        read_squad(broken)
    with pytest.raises(ValueError, match=r"squad-v2\.json: .* MB is over the 0\.001 MB limit"):
        read_squad(squad_file, max_mb=0.001)


def test_format_detection(tmp_path: Path, squad_file: Path) -> None:
    golden = tmp_path / "golden.json"  # one golden line, .json suffix: still golden
    golden.write_text(json.dumps({"id": "a", "question": "Which data paragraphs?", "answers": ["x"]}) + "\n")
    jsonl = tmp_path / "squad.jsonl"
    jsonl.write_text(squad_file.read_text())
    assert looks_like_squad(squad_file) and not looks_like_squad(golden) and not looks_like_squad(jsonl)
    items, problems, fmt = read_items(squad_file)
    assert fmt == "squad" and len(items) == 4 and len(problems) == 6
    assert read_items(golden)[2] == "golden"
    with pytest.raises(ValueError, match="not a SQuAD file"):
        read_items(golden, "squad")


def test_golden_import_writes_a_golden_file_and_the_articles(squad_file: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out, docs = tmp_path / "golden.jsonl", tmp_path / "docs"
    assert main(["golden", "import", "squad", str(squad_file), "-o", str(out), "--docs-dir", str(docs)]) == 0
    captured = capsys.readouterr()
    assert "wrote 4 questions (3 answerable, 1 unanswerable)" in captured.out and "6 skipped" in captured.out
    assert "answer_start 900 is past the end of the context" in captured.err

    items, problems = read_golden(out)
    assert problems == []
    assert [i.id for i in items] == ["q1", "q2", "q6", "7"]
    original = {i.id: i for i in read_squad(squad_file).items}
    for item in items:
        o = original[item.id]
        assert (item.question, item.answers, item.evidence, item.sources, item.answerable) == (
            o.question, o.answers, o.evidence, o.sources, o.answerable)

    files = sorted(p.name for p in docs.iterdir())
    assert files == ["Coastal_race.txt", "Vessa_Harbour-2.txt", "Vessa_Harbour.txt"]
    harbour = (docs / "Vessa_Harbour.txt").read_text(encoding="utf-8")
    assert harbour == f"Vessa Harbour\n\n{HARBOUR}\n"
    for item in items:  # every evidence string is in the document its source names
        name = item.sources[0].replace(" ", "_") + ".txt"
        assert all(e in (docs / name).read_text(encoding="utf-8") for e in item.evidence)


def test_golden_import_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["golden", "import", "squad", str(tmp_path / "missing.json"), "-o", str(tmp_path / "g.jsonl")]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "C.", "qas": [{"id": "x"}]}]}]}))
    assert main(["golden", "import", "squad", str(empty), "-o", str(tmp_path / "g.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no usable questions" in err and "data[0].paragraphs[0].qas[0]" in err
    assert not (tmp_path / "g.jsonl").exists()


def test_eval_reads_squad_after_ingesting_the_imported_articles(squad_file: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    docs, index, report = tmp_path / "docs", str(tmp_path / "index"), tmp_path / "report.json"
    assert main(["golden", "import", "squad", str(squad_file), "-o", str(tmp_path / "g.jsonl"),
                 "--docs-dir", str(docs)]) == 0
    assert main(["--index-dir", index, "ingest", str(docs), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(squad_file), "--index-dir", index, "--json", str(report)]) == 0  # format detected
    captured = capsys.readouterr()
    assert "6 SQuAD question(s), paragraph(s) or article(s) skipped" in captured.err
    assert "risk-coverage" in captured.out and "AURC" in captured.out
    data = json.loads(report.read_text())
    assert data["totals"]["items"] == 4 and data["totals"]["unanswerable"] == 1
    rc = data["risk_coverage"]
    assert rc["items"] == 4 and rc["aurc"] >= rc["oracle_aurc"]
    assert any(row["threshold"] == data["settings"]["abstain_threshold"] for row in rc["table"])
