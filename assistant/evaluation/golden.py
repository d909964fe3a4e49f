"""Golden set files: the JSON Lines reader and writer for hand-written questions and evidence.

Golden file (JSON Lines), one item a line:
  {"id": "...", "question": "...", "history": [...], "answers": [...], "evidence": [...],
   "sources": [...], "answerable": true}
`history`, `evidence`, `sources` are optional; `answerable` defaults to true. Comparisons use
`assistant.text.normalize`. Malformed lines are reported with their line number and skipped.
SQuAD JSON reads into the same `GoldenItem`s (`assistant.evaluation.squad`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def write_golden(items: list[GoldenItem], target: Path) -> None:
    from assistant.atomic import atomic_write_text

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "".join(json.dumps(golden_line(i), ensure_ascii=False) + "\n" for i in items))
