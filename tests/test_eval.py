"""Golden-set metrics on tiny hand-made inputs whose right numbers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.evaluation.golden import read_golden
from assistant.evaluation.run import calibrate
from assistant.evaluation.scoring import ItemResult, score_item, totals
from assistant.types import AskResult, Citation, Passage


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
    from assistant.evaluation.golden import GoldenItem

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


def _rc_items() -> list[ItemResult]:
    """Hand-computed risk-coverage example: a tie at 0.6 holds one wrong and one right answer.

    sorted: a1 0.9 right | a2 0.6 wrong, a3 0.6 right | u1 0.3 unanswerable (answering it is wrong)
    risk at k = 1..4 (the tie's wrong share 1/2 spread over it): 0/1, 0.5/2, 1/3, 2/4
    AURC = (0 + 0.25 + 1/3 + 0.5) / 4 = 0.270833; oracle (right first): (0 + 0 + 1/3 + 2/4) / 4 = 0.208333
    """
    return [
        _item("a2", True, False, False, True, 1, 0, 0.6, 1),
        _item("u1", False, False, None, None, 1, 0, 0.3, 1),
        _item("a1", True, False, True, True, 1, 1, 0.9, 1),
        _item("a3", True, False, True, True, 1, 1, 0.6, 1),
    ]


def test_aurc_and_oracle_match_hand_computed_values_with_a_tie() -> None:
    from assistant.evaluation.risk import aurc, oracle_aurc

    results = _rc_items()
    assert aurc(results) == pytest.approx((0 + 0.25 + 1 / 3 + 0.5) / 4)
    assert oracle_aurc(results) == pytest.approx((1 / 3 + 0.5) / 4)
    # the tie is order-free: the mean of its two orders (wrong first 0.3333, right first 0.2083)
    assert aurc(results) == pytest.approx(((0 + 0.5 + 1 / 3 + 0.5) / 4 + (0 + 0 + 1 / 3 + 0.5) / 4) / 2)
    assert aurc(list(reversed(results))) == aurc(results)
    assert aurc([]) is None and oracle_aurc([]) is None


def test_aurc_counts_an_abstained_answerable_item_as_wrong_and_perfect_order_equals_oracle() -> None:
    from assistant.evaluation.risk import aurc, oracle_aurc

    results = [
        _item("a1", True, False, True, True, 1, 1, 0.8, 1),
        _item("a2", True, True, False, True, 0, 0, 0.4, 1),  # abstained: no answer to count as right
        _item("u1", False, True, None, None, 0, 0, 0.2, 1),
    ]
    # risk at k = 1..3: 0, 1/2, 2/3 (a perfect order: the one right answer first)
    assert aurc(results) == pytest.approx((0 + 0.5 + 2 / 3) / 3)
    assert oracle_aurc(results) == pytest.approx(aurc(results))
    all_right = [_item("a", True, False, True, None, 0, 0, c, 1) for c in (0.1, 0.5, 0.5)]
    assert aurc(all_right) == 0 and oracle_aurc(all_right) == 0


def test_risk_coverage_curve_and_table() -> None:
    from assistant.evaluation.risk import risk_coverage, risk_coverage_curve

    curve = risk_coverage_curve(_rc_items())
    assert [(p["threshold"], p["answered"], p["wrong"]) for p in curve] == [(0.9, 1, 0), (0.6, 3, 1), (0.3, 4, 2)]
    assert [p["coverage"] for p in curve] == [0.25, 0.75, 1.0]
    assert [p["risk"] for p in curve] == pytest.approx([0.0, 1 / 3, 0.5])

    rc = risk_coverage(_rc_items(), thresholds=[0.0, 0.5, 0.6, 0.95, 0.5])
    assert (rc["items"], rc["aurc"], rc["oracle_aurc"], rc["excess_aurc"]) == (4, 0.2708, 0.2083, 0.0625)
    table = {row["threshold"]: row for row in rc["table"]}
    assert list(table) == [0.0, 0.5, 0.6, 0.95]  # sorted, repeats once
    assert (table[0.0]["answered"], table[0.0]["coverage"], table[0.0]["risk"]) == (4, 1.0, 0.5)
    assert (table[0.5]["answered"], table[0.5]["risk"]) == (3, 0.3333)
    assert table[0.6]["answered"] == 3  # confidence >= threshold: the tie is answered
    assert (table[0.95]["answered"], table[0.95]["coverage"], table[0.95]["risk"]) == (0, 0.0, None)
    assert len(rc["curve"]) == 3


def test_report_carries_risk_coverage_in_json_text_and_markdown() -> None:
    from assistant.evaluation.report import EvalReport

    results = _rc_items()
    report = EvalReport(results, totals(results), [], {"abstain_threshold": 0.0, "configured_abstain_threshold": 0.445})
    data = report.to_json()["risk_coverage"]
    assert data["aurc"] == 0.2708 and data["oracle_aurc"] == 0.2083
    assert [r["threshold"] for r in data["table"]][:6] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.445]
    text = report.risk_coverage_text()
    assert "0.445*" in text and "0.000*" in text and "AURC 0.271 (oracle 0.208" in text
    assert "use --calibrate" not in text  # a threshold-0 run has the whole curve
    assert "| 0.445 (abstention) | 3/4 | 0.750 | 0.333 |" in report.markdown()
    run = EvalReport(results, totals(results), [], {"abstain_threshold": 0.445})
    assert "use --calibrate" in run.risk_coverage_text()
