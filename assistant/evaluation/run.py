"""Running the golden set through an `Assistant`: the evaluation and the threshold calibrations."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from assistant.evaluation.golden import GoldenItem
from assistant.evaluation.report import EvalReport
from assistant.evaluation.scoring import ItemResult, score_item, totals
from assistant.text import normalize

if TYPE_CHECKING:  # the pipeline (model, index) loads only when a run needs it
    from assistant.pipeline import Assistant


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
    settings = {"abstain_threshold": assistant.answerer.abstain_threshold, "top_k": top_k or s.top_k, "model": s.model, "backend": name}
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
