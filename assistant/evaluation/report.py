"""`EvalReport`: one golden run's results as a table, a summary, Markdown and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from assistant.evaluation.risk import RISK_COVERAGE_GRID, risk_coverage
from assistant.evaluation.scoring import ItemResult


@dataclass
class EvalReport:
    results: list[ItemResult]
    totals: dict[str, Any]
    problems: list[str]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"totals": self.totals, "risk_coverage": self.risk_coverage(), "items": [asdict(r) for r in self.results],
                "problems": self.problems, "settings": self.settings}

    def thresholds(self) -> list[float]:
        """The abstention thresholds of this run: its own and, for a calibration run, the configured one."""
        return sorted({round(float(self.settings[k]), 4) for k in ("abstain_threshold", "configured_abstain_threshold")
                       if self.settings.get(k) is not None})

    def risk_coverage(self) -> dict[str, Any]:
        return risk_coverage(self.results, [*RISK_COVERAGE_GRID, *self.thresholds()])

    def risk_coverage_rows(self) -> list[tuple[str, str, str, str]]:
        """(threshold, answered, coverage, risk) per table row; * marks this run's threshold(s)."""
        marked = set(self.thresholds())
        return [(f"{row['threshold']:.3f}{'*' if row['threshold'] in marked else ''}",
                 f"{row['answered']}/{len(self.results)}", f"{row['coverage']:.3f}", _fmt(row["risk"]))
                for row in self.risk_coverage()["table"]]

    def risk_coverage_note(self) -> str:
        rc = self.risk_coverage()
        note = (f"AURC {_fmt(rc['aurc'])} (oracle {_fmt(rc['oracle_aurc'])}, excess {_fmt(rc['excess_aurc'])}; "
                f"lower is better) over {rc['items']} items; answered = confidence >= threshold, "
                f"answering an unanswerable item is wrong")
        run = self.settings.get("abstain_threshold")
        if run:
            note += (f"; items this run abstained on (confidence < {run}) count as wrong: "
                     f"use --calibrate for the curve below {run}")
        return note

    def risk_coverage_text(self) -> str:
        rows = [f"{'threshold':>10}  {'answered':>9}  {'coverage':>8}  {'risk':>6}"]
        rows += [f"{t:>10}  {a:>9}  {c:>8}  {r:>6}" for t, a, c, r in self.risk_coverage_rows()]
        return "\n".join(["risk-coverage (* = an abstention threshold: the run's, or the configured one)", *rows,
                          self.risk_coverage_note()])

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
        lines += ["", "## Risk-coverage", "", "| threshold | answered | coverage | risk |", "|---|---|---|---|",
                  *[f"| {t.replace('*', ' (abstention)')} | {a} | {c} | {r} |" for t, a, c, r in self.risk_coverage_rows()],
                  "", self.risk_coverage_note()]
        if self.problems:
            lines += ["", "Skipped lines:", *[f"- {p}" for p in self.problems]]
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
