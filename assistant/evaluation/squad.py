"""SQuAD v1.1 / v2.0 JSON as golden items, and the article files `golden import` writes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.evaluation.golden import GoldenItem, read_golden
from assistant.text import normalize, split_sentences

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
                         f"(assistant.evaluation.squad.SQUAD_MAX_MB); split it into smaller files by article")
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
