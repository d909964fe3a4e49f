"""Selective QA: how well a run's confidence orders its right answers before its wrong ones (AURC)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from assistant.evaluation.scoring import ItemResult

RISK_COVERAGE_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _wrong(r: ItemResult) -> bool:
    """An answer at some threshold is right only for an answerable item scored correct; answering an
    unanswerable item is always wrong (and so is an item the run abstained on: it has no answer)."""
    return not (r.answerable and r.correct)


def risk_coverage_curve(results: list[ItemResult]) -> list[dict[str, Any]]:
    """One point per distinct confidence t, highest first: the items with confidence >= t answered.

    coverage = answered / all items; risk = wrong answered / answered (see `_wrong`).
    """
    n = len(results)
    points: list[dict[str, Any]] = []
    answered = wrong = 0
    for conf, size, group_wrong in _confidence_groups(results):
        answered += size
        wrong += group_wrong
        points.append({"threshold": conf, "answered": answered, "wrong": wrong,
                       "coverage": answered / n, "risk": wrong / answered})
    return points


def _confidence_groups(results: list[ItemResult]) -> list[tuple[float, int, int]]:
    """(confidence, items, wrong items) per distinct confidence, highest first."""
    ordered = sorted(results, key=lambda r: r.confidence, reverse=True)
    groups = []
    for conf, members in itertools.groupby(ordered, key=lambda r: r.confidence):
        flags = [_wrong(r) for r in members]
        groups.append((conf, len(flags), sum(flags)))
    return groups


def risk_at(results: list[ItemResult], threshold: float) -> dict[str, Any]:
    """The point of the curve for one threshold (risk None when nothing is answered)."""
    answered = [r for r in results if r.confidence >= threshold]
    wrong = sum(1 for r in answered if _wrong(r))
    return {"threshold": threshold, "answered": len(answered), "wrong": wrong,
            "coverage": len(answered) / len(results) if results else 0.0,
            "risk": wrong / len(answered) if answered else None}


def aurc(results: list[ItemResult]) -> float | None:
    """Area under the risk-coverage curve (Geifman & El-Yaniv): the mean over k = 1..n of the risk of
    the k most confident items. Items with equal confidence enter together, so within a tie the risk
    at k is its expected value over the tie's orders: wrong before the tie + (k - before) x the tie's
    share of wrong items, over k."""
    n = len(results)
    if not n:
        return None
    total = 0.0
    before = wrong_before = 0
    for _, size, wrong in _confidence_groups(results):
        for m in range(1, size + 1):
            total += (wrong_before + m * wrong / size) / (before + m)
        before += size
        wrong_before += wrong
    return total / n


def oracle_aurc(results: list[ItemResult]) -> float | None:
    """The AURC of a perfect confidence (every right answer before every wrong one): the floor."""
    n = len(results)
    if not n:
        return None
    right = n - sum(1 for r in results if _wrong(r))
    return sum((k - right) / k for k in range(right + 1, n + 1)) / n


def risk_coverage(results: list[ItemResult], thresholds: Iterable[float] = RISK_COVERAGE_GRID) -> dict[str, Any]:
    """AURC, its oracle value and excess (AURC - oracle), the full curve and a table at `thresholds`."""
    area, best = aurc(results), oracle_aurc(results)

    def rounded(point: dict[str, Any]) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()}

    return {
        "items": len(results),
        "aurc": None if area is None else round(area, 4),
        "oracle_aurc": None if best is None else round(best, 4),
        "excess_aurc": None if area is None or best is None else round(area - best, 4),
        "table": [rounded(risk_at(results, t)) for t in sorted(set(thresholds))],
        "curve": [rounded(p) for p in risk_coverage_curve(results)],
    }
