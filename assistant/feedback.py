"""Thumbs up/down on answers, kept in SQLite beside the index, exportable as golden-file seeds.

Each row keeps what a reviewer needs to turn it into a golden item: the question, the history,
the answer shown, its citations (with quotes) and the user's verdict and comment.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.atomic import atomic_write_text
from assistant.types import file_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    rating INTEGER NOT NULL,          -- +1 thumbs up, -1 thumbs down
    comment TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]',
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL DEFAULT 0,
    citations TEXT NOT NULL DEFAULT '[]'
);
"""


@dataclass
class FeedbackItem:
    id: int
    created_at: float
    rating: int
    comment: str
    question: str
    history: list[str]
    answer: str
    abstained: bool
    citations: list[dict[str, Any]]

    def to_golden_seed(self) -> dict[str, Any]:
        """A golden-file line to review: cited quotes become evidence; a thumbs-up answer a candidate answer."""
        seed: dict[str, Any] = {"id": f"feedback-{self.id}", "question": self.question}
        if self.history:
            seed["history"] = self.history
        if self.abstained:
            seed["answerable"] = self.rating < 0  # a disliked abstention suggests the answer exists
            if self.rating < 0:
                seed["answers"] = []
        else:
            seed["answers"] = [self.answer] if self.rating > 0 else []
            seed["evidence"] = [c["quote"] for c in self.citations if c.get("quote")]
            seed["sources"] = sorted({file_name(c.get("source")) for c in self.citations if c.get("source")})
        seed["feedback"] = {"rating": self.rating, "comment": self.comment, "answer_shown": self.answer,
                            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at))}
        return seed


class FeedbackStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(_SCHEMA)

    def add(self, rating: int, question: str, answer: str, citations: list[dict[str, Any]] | None = None,
            comment: str = "", history: list[str] | None = None, abstained: bool = False) -> int:
        if rating not in (1, -1):
            raise ValueError("rating must be 1 (thumbs up) or -1 (thumbs down)")
        if not question.strip():
            raise ValueError("question is empty")
        with self._lock:
            cur = self.db.execute(
                "INSERT INTO feedback(created_at, rating, comment, question, history, answer, abstained, citations) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), rating, comment or "", question, json.dumps(history or []), answer,
                 int(abstained), json.dumps(citations or [])),
            )
            return int(cur.lastrowid or 0)

    def items(self) -> Iterator[FeedbackItem]:
        rows = self.db.execute(
            "SELECT id, created_at, rating, comment, question, history, answer, abstained, citations "
            "FROM feedback ORDER BY id"
        ).fetchall()
        for r in rows:
            yield FeedbackItem(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], bool(r[7]), json.loads(r[8]))

    def export_jsonl(self, out: Path | str) -> int:
        """Write every item as a golden seed line (atomically); returns the count."""
        lines = [json.dumps(item.to_golden_seed(), ensure_ascii=False) for item in self.items()]
        atomic_write_text(Path(out), "".join(line + "\n" for line in lines))
        return len(lines)

    def close(self) -> None:
        self.db.close()
