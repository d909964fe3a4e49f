"""SQuAD-format training data as the assistant sees it: folds of articles, real indexes, candidates.

Shared by train_answerer.py (fits the answer scorer) and bench_answers.py (compares answerers).
Each article becomes one document (its paragraphs separated by blank lines) and is ingested with
the real Ingestor into real indexes; questions go through the real retriever. Folds split by
article, never by question (questions of one article share sentences). Per fold of articles
{a, b, ...} there is one index of the fold's articles (its answerable and adversarial questions
are asked there) and, for "not in my documents" questions, each article's questions are asked
against an index of the fold's other articles (a question whose answer string occurs in that
index is left out: it might be answerable there).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from assistant.embed import Embedder
from assistant.ingest import Ingestor, TextItem
from assistant.pipeline import Assistant
from assistant.settings import Settings
from assistant.text import normalize

SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "qa" / "squad2-train" / "squad2-train-10-articles.json"


@dataclass
class Question:
    id: str
    article: str
    text: str
    answers: list[str]
    impossible: bool


@dataclass
class Article:
    title: str
    text: str
    questions: list[Question] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_articles(path: Path = SQUAD, max_articles: int | None = None, max_questions: int | None = None,
                  max_paragraphs: int | None = None) -> list[Article]:
    """Articles of a SQuAD v1/v2 JSON file, each with its questions (at most max_questions each;
    the first max_paragraphs paragraphs of each article: a small slice for tests)."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    articles = []
    for raw in data[:max_articles]:
        title = raw["title"].replace("_", " ")
        kept = raw["paragraphs"][:max_paragraphs]
        article = Article(title, "\n\n".join(p["context"].strip() for p in kept))
        for p in kept:
            for qa in p["qas"]:
                answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                article.questions.append(Question(qa["id"], title, qa["question"].strip(), answers,
                                                  bool(qa.get("is_impossible")) or not answers))
        if max_questions is not None:
            article.questions = article.questions[:max_questions]
        articles.append(article)
    return articles


def make_folds(articles: list[Article], k: int) -> list[list[Article]]:
    """k folds of whole articles; articles with adversarial questions are spread over the folds first."""
    order = sorted(articles, key=lambda a: (-sum(q.impossible for q in a.questions), a.title))
    folds: list[list[Article]] = [[] for _ in range(k)]
    for i, article in enumerate(order):
        folds[i % k].append(article)
    return [f for f in folds if f]


def build_index(articles: list[Article], folder: Path, embedder: Embedder, settings: Settings) -> Settings:
    """A real index of `articles` in `folder` (reused when it already holds them)."""
    s = settings.override(index_dir=folder)
    report = Ingestor(s, embedder=embedder).ingest_texts(
        [TextItem(f"squad/{a.title}", a.text, a.title) for a in articles], progress=False)
    failed = report.failed
    if failed:
        raise RuntimeError(f"ingest failed: {failed[0].source}: {failed[0].reason}")
    return s


def answer_in(answers: list[str], normalized_text: str) -> bool:
    """Whether any answer string occurs in the text (both normalized)."""
    return any(normalize(a) and normalize(a) in normalized_text for a in answers)


@dataclass
class Asked:
    """One question asked against one index: kind "answerable", "adversarial" or "elsewhere"."""

    question: Question
    kind: str
    fold: int
    assistant: Assistant


def asked_questions(articles: list[Article], folds: int, root: Path, embedder: Embedder,
                    settings: Settings) -> Iterator[Asked]:
    """Every question in every role, fold by fold, with an open Assistant on the right index."""
    for f, fold in enumerate(make_folds(articles, folds)):
        own = build_index(fold, root / f"fold{f}", embedder, settings)
        with Assistant(own, embedder) as assistant:
            for article in fold:
                for q in article.questions:
                    yield Asked(q, "adversarial" if q.impossible else "answerable", f, assistant)
        if len(fold) < 2:
            continue
        for i, article in enumerate(fold):
            others = [a for j, a in enumerate(fold) if j != i]
            other = build_index(others, root / f"fold{f}-without{i}", embedder, settings)
            haystack = normalize(" ".join(a.text for a in others))
            with Assistant(other, embedder) as assistant:
                for q in article.questions:
                    if not q.impossible and not answer_in(q.answers, haystack):
                        yield Asked(q, "elsewhere", f, assistant)
