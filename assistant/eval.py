"""Golden-set evaluation: score the assistant against hand-written questions and evidence.

Golden file (JSON Lines), one item a line:
  {"id": "...", "question": "...", "history": [...], "answers": [...], "evidence": [...],
   "sources": [...], "answerable": true}
`history`, `evidence`, `sources` are optional; `answerable` defaults to true. Comparisons use
`assistant.text.normalize`. Malformed lines are reported with their line number and skipped.

SQuAD v1/v2 JSON (`read_squad`) reads into the same `GoldenItem`s; `risk_coverage` scores how
well a run's confidence orders its right answers before its wrong ones (AURC).
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.text import normalize, split_sentences

if TYPE_CHECKING:  # the pipeline (model, index) loads only when a run needs it
    from assistant.pipeline import AskResult, Assistant


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


def golden_line(item: GoldenItem) -> dict[str, Any]:
    """One golden-file line for `item` (what `read_golden` reads back)."""
    line: dict[str, Any] = {"id": item.id, "question": item.question}
    if item.history:
        line["history"] = item.history
    if item.answerable:
        line["answers"] = item.answers
    if item.evidence:
        line["evidence"] = item.evidence
    if item.sources:
        line["sources"] = item.sources
    line["answerable"] = item.answerable
    return line


# -- SQuAD v1.1 / v2.0 JSON ------------------------------------------------------------------

# Largest SQuAD file read (the whole file is parsed in memory, several times its size; SQuAD 2.0
# train is 40 MB). Larger files are refused: split them by article.
SQUAD_MAX_MB = 100.0

_SQUAD_HEAD = re.compile(r'^\s*\{.*?(?<!\\)"data"\s*:\s*\[', re.DOTALL)
_SQUAD_PARAGRAPHS = re.compile(r'(?<!\\)"paragraphs"\s*:\s*\[')


@dataclass
class SquadArticle:
    title: str
    paragraphs: list[str]  # the contexts, in file order


@dataclass
class SquadSet:
    items: list[GoldenItem]
    problems: list[str]  # one a skipped question, paragraph or article: "FILE: data[3].paragraphs[2].qas[5]: ..."
    articles: list[SquadArticle]


def looks_like_squad(path: Path) -> bool:
    """A `.json` file whose top level has "data" holding articles with "paragraphs" (read from its head)."""
    if path.suffix.lower() != ".json":
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.read(1 << 20)
    match = _SQUAD_HEAD.match(head)
    return bool(match and _SQUAD_PARAGRAPHS.search(head, match.end()))


def _squad_evidence(context: str, spans: list[tuple[int, int, str]]) -> list[str]:
    """Per answer span, the context's sentence(s) overlapping it (one string), else the answer text."""
    sentences = split_sentences(context)
    evidence: list[str] = []
    for start, end, text in spans:
        hits = [s for s in sentences if s.start < end and start < s.end]
        piece = context[hits[0].start:hits[-1].end] if hits else text
        if piece not in evidence:
            evidence.append(piece)
    return evidence


def _squad_answers(context: str, raw: Any, where: str) -> list[tuple[int, int, str]]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{where}: an answerable question needs "answers" (a list of {{"text", "answer_start"}})')
    spans = []
    for n, answer in enumerate(raw):
        at = f"{where}.answers[{n}]"
        if not isinstance(answer, dict):
            raise ValueError(f"{at}: an answer must be an object with text and answer_start")
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f'{at}: "text" is missing or empty')
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ValueError(f'{at}: "answer_start" must be a whole number >= 0, not {start!r}')
        end = start + len(text)
        if end > len(context):
            raise ValueError(f"{at}: answer_start {start} is past the end of the context "
                             f"({start} + {len(text)} characters > {len(context)})")
        found = context[start:end]
        if found != text and normalize(found) != normalize(text):
            raise ValueError(f"{at}: answer_start {start} does not point at the answer text: "
                             f"the context has {found[:60]!r} there, the answer is {text[:60]!r}")
        spans.append((start, end, text))
    return spans


def read_squad(path: Path, max_mb: float = SQUAD_MAX_MB) -> SquadSet:
    """SQuAD v1.1/v2.0 JSON as golden items (plus each article's paragraphs, for `golden import`).

    Answerable questions: `answers` = the distinct answer texts, `evidence` = the sentence(s) of the
    context holding each answer span, `sources` = [article title]. `is_impossible` questions are
    unanswerable (`plausible_answers` are ignored). A bad question, paragraph or article is skipped
    and named in `problems`; a file that is not SQuAD at all, or too big, raises ValueError.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise ValueError(f"{path}: {size / 1024 / 1024:.1f} MB is over the {max_mb:g} MB limit for SQuAD files "
                         f"(assistant.eval.SQUAD_MAX_MB); split it into smaller files by article")
    try:
        root = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 (byte {exc.start}); SQuAD files are UTF-8 JSON") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        raise ValueError(f'{path}: not a SQuAD file: the top level needs "data", a list of articles')
    items: list[GoldenItem] = []
    problems: list[str] = []
    articles: list[SquadArticle] = []
    seen: set[str] = set()
    ordinal = 0  # questions seen, 1-based: the items' `line`

    def skip(where: str, message: str, what: str) -> None:
        problems.append(f"{path}: {where}: {message}; {what} skipped")

    for a, article in enumerate(root["data"]):
        where = f"data[{a}]"
        if not isinstance(article, dict):
            skip(where, "an article must be an object", "article")
            continue
        title = article.get("title")
        if not isinstance(title, str) or not title.strip():
            skip(where, 'field "title" is missing or empty', "article")
            continue
        title = " ".join(title.split())
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            skip(where, 'field "paragraphs" must be a list', "article")
            continue
        contexts: list[str] = []
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            qas = paragraph.get("qas", []) if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                skip(where, 'field "context" is missing or empty', "paragraph")
                continue
            if not isinstance(qas, list):
                skip(where, 'field "qas" must be a list', "paragraph")
                continue
            contexts.append(context)
            for q, qa in enumerate(qas):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                ordinal += 1
                try:
                    if not isinstance(qa, dict):
                        raise ValueError(f"{where}: a question must be an object")
                    question = qa.get("question")
                    if not isinstance(question, str) or not question.strip():
                        raise ValueError(f'{where}: field "question" is missing or empty')
                    raw_id = qa.get("id")
                    if raw_id is None or isinstance(raw_id, (bool, dict, list)) or not str(raw_id).strip():
                        raise ValueError(f'{where}: field "id" is missing')
                    item_id = str(raw_id).strip()
                    if item_id in seen:
                        raise ValueError(f'{where}: duplicate id "{item_id}"')
                    impossible = qa.get("is_impossible", False)
                    if not isinstance(impossible, bool):
                        raise ValueError(f'{where}: field "is_impossible" must be true or false')
                    if impossible:
                        item = GoldenItem(item_id, question.strip(), ordinal, sources=[title], answerable=False)
                    else:
                        spans = _squad_answers(context, qa.get("answers"), where)
                        answers: list[str] = []
                        for _, _, text in spans:
                            if all(normalize(text) != normalize(known) for known in answers):
                                answers.append(text)
                        item = GoldenItem(item_id, question.strip(), ordinal, answers=answers,
                                          evidence=_squad_evidence(context, spans), sources=[title])
                except ValueError as exc:
                    problems.append(f"{path}: {exc}; question skipped")
                    continue
                seen.add(item_id)
                items.append(item)
        articles.append(SquadArticle(title, contexts))
    return SquadSet(items, problems, articles)


def read_items(path: Path, fmt: str | None = None) -> tuple[list[GoldenItem], list[str], str]:
    """Golden items from a golden JSONL (`fmt` "golden") or SQuAD JSON ("squad") file; None: detect.

    Returns the items, the problems (skipped lines or questions) and the format read.
    """
    fmt = fmt or ("squad" if looks_like_squad(path) else "golden")
    if fmt == "squad":
        squad = read_squad(path)
        return squad.items, squad.problems, fmt
    if fmt != "golden":
        raise ValueError(f"unknown question-file format {fmt!r}: golden or squad")
    items, problems = read_golden(path)
    return items, problems, fmt


def _file_stem(title: str) -> str:
    stem = re.sub(r"[^\w.-]+", "_", title, flags=re.UNICODE).strip("._")[:100]
    return stem or "article"


def write_squad_docs(articles: list[SquadArticle], folder: Path) -> list[Path]:
    """One `.txt` per article: the title on the first line, then the paragraphs with a blank line
    between them (file names from the titles; repeated titles get -2, -3, ...)."""
    from assistant.atomic import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written = []
    for article in articles:
        stem = base = _file_stem(article.title)
        n = 1
        while stem.lower() in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.lower())
        target = folder / f"{stem}.txt"
        atomic_write_text(target, "\n\n".join([article.title, *(c.strip() for c in article.paragraphs)]) + "\n")
        written.append(target)
    return written


def write_golden(items: list[GoldenItem], target: Path) -> None:
    from assistant.atomic import atomic_write_text

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "".join(json.dumps(golden_line(i), ensure_ascii=False) + "\n" for i in items))


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


# -- selective QA: risk-coverage -----------------------------------------------------------

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
