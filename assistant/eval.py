"""Golden-set evaluation: score the assistant against hand-written questions and evidence.

Golden file (JSON Lines), one item a line:
  {"id": "...", "question": "...", "history": [...], "answers": [...], "evidence": [...],
   "sources": [...], "answerable": true}
`history`, `evidence`, `sources` are optional; `answerable` defaults to true. Comparisons use
`assistant.text.normalize`. Malformed lines are reported with their line number and skipped.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.pipeline import AskResult, Assistant
from assistant.text import normalize


@dataclass
class GoldenItem:
    id: str
    question: str
    line: int
    answers: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    answerable: bool = True


def _str_list(raw: dict[str, Any], key: str) -> list[str]:
    value = raw.get(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'field "{key}" must be a list of strings')
    return value


def read_golden(path: Path) -> tuple[list[GoldenItem], list[str]]:
    """Items, plus one message per malformed line ('line N: what is wrong')."""
    items: list[GoldenItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError("a line must be a JSON object")
                question = raw.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise ValueError('field "question" is missing or empty')
                answerable = raw.get("answerable", True)
                if not isinstance(answerable, bool):
                    raise ValueError('field "answerable" must be true or false')
                answers = _str_list(raw, "answers")
                if answerable and not answers:
                    raise ValueError('an answerable item needs "answers" (a list of accepted answers)')
                item_id = str(raw.get("id") or f"line{number}")
                if item_id in seen:
                    raise ValueError(f'duplicate id "{item_id}"')
                seen.add(item_id)
                items.append(GoldenItem(item_id, question.strip(), number, answers, _str_list(raw, "history"),
                                        _str_list(raw, "evidence"), _str_list(raw, "sources"), answerable))
            except (json.JSONDecodeError, ValueError) as exc:
                problems.append(f"{path}:{number}: {exc}; line skipped")
    return items, problems


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


@dataclass
class EvalReport:
    results: list[ItemResult]
    totals: dict[str, Any]
    problems: list[str]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"totals": self.totals, "items": [asdict(r) for r in self.results], "problems": self.problems,
                "settings": self.settings}

    def table(self) -> str:
        generative = any(r.model or r.backend != "extractive" for r in self.results)
        by = f" {'by':<11}" if generative else ""
        rows = [f"{'id':<10} {'ok':<4} {'abst':<5} {'evid':<5} {'cites':<6} {'conf':>6} {'ms':>7}{by}  question"]
        for r in self.results:
            ok = "-" if r.correct is None else ("yes" if r.correct else "NO")
            if not r.answerable:
                ok = "yes" if r.abstained else "NO"
            evid = "-" if r.evidence_hit is None else ("yes" if r.evidence_hit else "no")
            who = f" {r.backend + ('*' if r.fallback else ''):<11}" if generative else ""
            rows.append(f"{r.id:<10} {ok:<4} {str(r.abstained).lower():<5} {evid:<5} "
                        f"{r.good_citations}/{r.citations:<4} {r.confidence:>6.3f} {r.latency_ms:>7.1f}{who}  {r.question[:70]}")
        if generative:
            rows.append("(by: who answered; * = fell back from the LLM)")
        return "\n".join(rows)

    def summary(self) -> str:
        t = self.totals
        return "\n".join([
            f"answer accuracy      {t['correct']}/{t['answerable']} = {_fmt(t['answer_accuracy'])}",
            f"evidence hit@k       {_fmt(t['evidence_hit_at_k'])}",
            f"citation precision   {_fmt(t['citation_precision'])} ({t['citations']} citations)",
            f"citation recall      {t['items_with_good_citation']}/{t['answerable']} = {_fmt(t['citation_recall'])}",
            f"abstention accuracy  {t['abstained_unanswerable']}/{t['unanswerable']} = {_fmt(t['abstention_accuracy'])}",
            f"false abstentions    {t['false_abstentions']}/{t['answerable']} = {_fmt(t['false_abstention_rate'])}",
            f"latency p50 / p95    {t['latency_p50_ms']} / {t['latency_p95_ms']} ms",
            *([f"answered by          {', '.join(f'{k} {v}' for k, v in t['answered_by'].items())} "
               f"({t['fallbacks']} fallbacks, {t['unsupported_sentences']} unsupported sentences)",
               f"LLM                  {t['llm_model']}: {t['llm_calls']} calls, time to first token p50 "
               f"{t['ttft_p50_ms']} ms, {t['tokens_per_s_mean']} tokens/s"] if "answered_by" in t else []),
        ])

    def markdown(self) -> str:
        lines = ["# Golden-set evaluation", "", "| metric | value |", "|---|---|"]
        for key, value in self.totals.items():
            lines.append(f"| {key} | {_fmt(value)} |")
        lines += ["", "| id | correct | abstained | evidence hit | good/citations | confidence | ms | question | answer |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in self.results:
            answer = r.answer.replace("|", "\\|").replace("\n", " ")[:200]
            question = r.question.replace("|", "\\|")
            lines.append(f"| {r.id} | {r.correct} | {r.abstained} | {r.evidence_hit} | {r.good_citations}/{r.citations}"
                         f" | {r.confidence:.3f} | {r.latency_ms} | {question} | {answer} |")
        if self.problems:
            lines += ["", "Skipped lines:", *[f"- {p}" for p in self.problems]]
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def evaluate(assistant: Assistant, items: list[GoldenItem], top_k: int | None = None,
             problems: list[str] | None = None, backend: str | None = None) -> EvalReport:
    """Ask every item (LLM backends stream, so time to first token is measured) and score it."""
    name = backend or assistant.settings.backend
    results = []
    for item in items:
        started = time.perf_counter()
        if name == "extractive":
            result = assistant.ask(item.question, history=item.history, top_k=top_k, backend=name)
        else:
            events = assistant.ask_events(item.question, history=item.history, top_k=top_k, backend=name)
            result = next(e.result for e in events if e.kind == "final" and e.result is not None)
        results.append(score_item(item, result, (time.perf_counter() - started) * 1000))
    s = assistant.settings
    settings = {"abstain_threshold": s.abstain_threshold, "top_k": top_k or s.top_k, "model": s.model, "backend": name}
    if name != "extractive":
        settings.update(llm_model=s.llm_model, verify_threshold=s.verify_threshold,
                        unsupported_policy=s.unsupported_policy, fallback=s.fallback,
                        llm_context_tokens=s.llm_context_tokens, llm_threads=s.llm_threads)
    return EvalReport(results, totals(results), problems or [], settings)


def calibrate(results: list[ItemResult]) -> list[dict[str, Any]]:
    """What each abstention threshold would give, from one run made with threshold 0.

    An item abstains iff its confidence is below the threshold; answers above it do not change.
    """
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    cuts = sorted({0.0, *(round(r.confidence + 1e-4, 4) for r in results)})
    table = []
    for cut in cuts:
        correct = sum(1 for r in answerable if r.correct and r.confidence >= cut)
        false_abst = sum(1 for r in answerable if r.confidence < cut)
        abst_ok = sum(1 for r in unanswerable if r.confidence < cut)
        table.append({"threshold": cut, "correct": correct, "false_abstentions": false_abst,
                      "abstained_unanswerable": abst_ok,
                      "balanced": round((correct / max(len(answerable), 1) + abst_ok / max(len(unanswerable), 1)) / 2, 4)})
    return table


def calibrate_verifier(assistant: Assistant, items: list[GoldenItem], top_k: int | None = None) -> dict[str, Any]:
    """The verifier threshold the golden set supports (see `verifier_pairs`, `verify.choose_threshold`)."""
    from assistant.verify import Verifier, choose_threshold

    verifier = Verifier(assistant.embedder, assistant.settings.verify_threshold)
    pairs = verifier_pairs(assistant, items, top_k)
    for pair in pairs:
        support = verifier.support(pair.text, pair.source_text)
        pair.score, pair.numbers_ok = support.score, support.numbers_ok
    return choose_threshold(pairs)


def verifier_pairs(assistant: Assistant, items: list[GoldenItem], top_k: int | None = None) -> list[Any]:
    """Labelled (text, passage) pairs for calibrating the citation verifier, from the golden set.

    Positives: each extractive quote and each golden evidence string, paired with the retrieved
    passages that hold it, plus a shortened quote (every third word left out: a claim that says
    less than its source is still supported). Negatives: the same texts paired with retrieved
    passages that do not hold them and do not overlap one that does (hard negatives: same topic,
    retrieved for the same question).
    """
    from assistant.verify import Pair

    pairs: list[Pair] = []
    for item in items:
        result = assistant.ask(item.question, history=item.history, top_k=top_k, backend="extractive")
        texts = [(c.quote, True) for c in result.citations] + [(e, False) for e in item.evidence]
        for text, is_quote in texts:
            holders = [p for p in result.passages if normalize(text) in normalize(p.text)]
            if not holders:
                continue
            variants = [text]
            if is_quote:
                words = text.split()
                if len(words) >= 9:
                    variants.append(" ".join(w for i, w in enumerate(words) if i % 3 != 2))
            for p in result.passages:
                overlaps = any(h.doc_id == p.doc_id and h.start < p.end and p.start < h.end for h in holders)
                positive = p in holders
                if not positive and overlaps:
                    continue
                pairs.extend(Pair(v, p.text, positive) for v in variants)
    return pairs
