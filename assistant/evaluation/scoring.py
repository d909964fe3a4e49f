"""Scoring one golden run: an answer against its item (`score_item`) and the run's totals."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.evaluation.golden import GoldenItem
from assistant.text import normalize

if TYPE_CHECKING:
    from assistant.types import AskResult


@dataclass
class ItemResult:
    id: str
    question: str
    answerable: bool
    abstained: bool
    correct: bool | None  # None for unanswerable items
    evidence_hit: bool | None  # None when the item has no evidence
    citations: int
    good_citations: int
    confidence: float
    latency_ms: float
    answer: str
    backend: str = "extractive"  # who answered (an LLM backend, or extractive when it fell back)
    fallback: bool = False  # an LLM was asked for but the answer came from the fallback
    unsupported: int = 0  # generated sentences the verifier rejected
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    model: str = ""


def _contains_any(haystack: str, needles: list[str]) -> bool:
    text = normalize(haystack)
    return any(normalize(n) and normalize(n) in text for n in needles)


def score_item(item: GoldenItem, result: AskResult, latency_ms: float) -> ItemResult:
    correct = None
    if item.answerable:  # sentences marked unsupported do not count: only what citations vouch for
        correct = not result.abstained and _contains_any(result.verified_answer(), item.answers)
    evidence_hit = None
    if item.evidence:
        evidence_hit = any(_contains_any(p.text, item.evidence) for p in result.passages)
    texts = {p.chunk_id: p.text for p in result.passages}
    good = 0
    for citation in result.citations:
        passage_text = texts.get(citation.chunk_id, citation.quote)
        if item.answerable and item.evidence and _contains_any(passage_text, item.evidence):
            good += 1
    return ItemResult(item.id, item.question, item.answerable, result.abstained, correct, evidence_hit,
                      len(result.citations), good, result.confidence, round(latency_ms, 1), result.answer,
                      result.backend, result.fallback_reason is not None, len(result.unsupported),
                      result.timings.get("llm_ttft_ms"), result.timings.get("llm_tokens_per_s"), result.model)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def totals(results: list[ItemResult]) -> dict[str, Any]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    with_evidence = [r for r in answerable if r.evidence_hit is not None]
    citations = sum(r.citations for r in results)
    latencies = sorted(r.latency_ms for r in results)
    return {
        "items": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "correct": sum(1 for r in answerable if r.correct),
        "answer_accuracy": _ratio(sum(1 for r in answerable if r.correct), len(answerable)),
        "evidence_hit_at_k": _ratio(sum(1 for r in with_evidence if r.evidence_hit), len(with_evidence)),
        "citations": citations,
        "citation_precision": _ratio(sum(r.good_citations for r in results), citations),
        "items_with_good_citation": sum(1 for r in with_evidence if r.good_citations > 0),
        "citation_recall": _ratio(sum(1 for r in with_evidence if r.good_citations > 0), len(with_evidence)),
        "abstained_unanswerable": sum(1 for r in unanswerable if r.abstained),
        "abstention_accuracy": _ratio(sum(1 for r in unanswerable if r.abstained), len(unanswerable)),
        "false_abstentions": sum(1 for r in answerable if r.abstained),
        "false_abstention_rate": _ratio(sum(1 for r in answerable if r.abstained), len(answerable)),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p95_ms": round(_percentile(latencies, 95), 1) if latencies else None,
        **_llm_totals(results),
    }


def _llm_totals(results: list[ItemResult]) -> dict[str, Any]:
    """Generative runs only: who answered, fallbacks, rejected sentences, speed, model."""
    asked = [r for r in results if r.model or r.backend != "extractive"]
    if not asked:
        return {}
    ttft = sorted(r.ttft_ms for r in asked if r.ttft_ms is not None)
    rates = [r.tokens_per_s for r in asked if r.tokens_per_s is not None]
    by: dict[str, int] = {}
    for r in results:
        by[r.backend] = by.get(r.backend, 0) + 1
    return {
        "answered_by": by,
        "fallbacks": sum(1 for r in results if r.fallback),
        "unsupported_sentences": sum(r.unsupported for r in results),
        "llm_model": next((r.model for r in asked if r.model), ""),
        "llm_calls": len(rates) or len(ttft),
        "ttft_p50_ms": round(statistics.median(ttft), 1) if ttft else None,
        "tokens_per_s_mean": round(statistics.mean(rates), 1) if rates else None,
    }


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)

