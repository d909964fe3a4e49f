"""Golden-set metrics on tiny hand-made inputs whose right numbers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answer import Citation
from assistant.eval import ItemResult, calibrate, read_golden, score_item, totals
from assistant.pipeline import AskResult
from assistant.retrieve import Passage


def _passage(chunk_id: int, text: str) -> Passage:
    return Passage(chunk_id, "d1", "Title", "/docs/a.txt", 0, len(text), text, 0.1, 0.5)


def _result(answer: str, cited: list[int], passages: list[Passage], abstained: bool = False) -> AskResult:
    citations = [Citation(n, cid, "d1", "Title", "/docs/a.txt", 0, 5, "quote") for n, cid in enumerate(cited, 1)]
    return AskResult("q", "q", answer, abstained, 0.5, citations, passages)


def test_read_golden_reports_bad_lines_with_numbers(tmp_path: Path) -> None:
    golden = tmp_path / "g.jsonl"
    golden.write_text("\n".join([
        json.dumps({"id": "a", "question": "Who?", "answers": ["Ann"]}),
        "{not json",
        json.dumps({"id": "b", "question": "", "answers": ["x"]}),
        json.dumps({"id": "c", "question": "What?"}),  # answerable without answers
        json.dumps({"id": "d", "question": "Why?", "answerable": False}),
        "",
        json.dumps({"id": "a", "question": "Dup?", "answers": ["x"]}),
    ]) + "\n", encoding="utf-8")
    items, problems = read_golden(golden)
    assert [i.id for i in items] == ["a", "d"]
    assert items[1].answerable is False and items[1].answers == []
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "7"]
    assert "question" in problems[1] and "answers" in problems[2] and "duplicate" in problems[3]


def test_score_item_normalizes_and_checks_cited_passages() -> None:
    from assistant.eval import GoldenItem

    good = _passage(1, "The plan was \u201cas much as 90 per cent\u201d agreed.")
    other = _passage(2, "Unrelated text about weather.")
    item = GoldenItem("x", "q", 1, answers=["90 PER CENT"], evidence=['"As much as  90 per cent"'])
    scored = score_item(item, _result("It is  90 per\u00a0cent [1] and more [2]", [1, 2], [good, other]), 12.0)
    assert scored.correct is True
    assert scored.evidence_hit is True
    assert (scored.good_citations, scored.citations) == (1, 2)

    abstained = score_item(item, _result("I could not find", [], [good], abstained=True), 5.0)
    assert abstained.correct is False and abstained.citations == 0

    unanswerable = GoldenItem("u", "q", 2, answerable=False)
    wrong = score_item(unanswerable, _result("Something [1]", [2], [other]), 3.0)
    assert wrong.correct is None and wrong.good_citations == 0 and wrong.citations == 1


def _item(id_: str, answerable: bool, abstained: bool, correct: bool | None, hit: bool | None,
          cites: int, good: int, conf: float, ms: float) -> ItemResult:
    return ItemResult(id_, "q", answerable, abstained, correct, hit, cites, good, conf, ms, "a")


def test_totals_match_hand_computed_values() -> None:
    results = [
        _item("a1", True, False, True, True, 2, 2, 0.9, 10),
        _item("a2", True, False, False, True, 1, 0, 0.6, 20),
        _item("a3", True, True, False, False, 0, 0, 0.2, 30),
        _item("a4", True, False, True, None, 1, 0, 0.7, 40),  # no evidence: out of recall/hit
        _item("u1", False, True, None, None, 0, 0, 0.1, 50),
        _item("u2", False, False, None, None, 1, 0, 0.8, 60),
    ]
    t = totals(results)
    assert t["answer_accuracy"] == 0.5  # 2 of 4 answerable
    assert t["evidence_hit_at_k"] == round(2 / 3, 4)
    assert t["citation_precision"] == 0.4  # 2 good of 5 citations
    assert t["citation_recall"] == round(1 / 3, 4)  # a1 only, of 3 items with evidence
    assert t["abstention_accuracy"] == 0.5
    assert t["false_abstentions"] == 1 and t["false_abstention_rate"] == 0.25
    assert t["latency_p50_ms"] == 35.0
    assert t["latency_p95_ms"] == pytest.approx(57.5)


def test_calibration_counts_follow_the_threshold() -> None:
    results = [
        _item("a1", True, False, True, True, 1, 1, 0.9, 1),
        _item("a2", True, False, True, True, 1, 1, 0.4, 1),
        _item("u1", False, False, None, None, 1, 0, 0.5, 1),
    ]
    rows = {round(r["threshold"], 2): r for r in calibrate(results)}
    assert rows[0.0]["correct"] == 2 and rows[0.0]["abstained_unanswerable"] == 0
    assert rows[0.5]["false_abstentions"] == 1 and rows[0.5]["abstained_unanswerable"] == 1
    assert rows[0.9]["correct"] == 0
