"""The assistant as one object: open an index once, then `search()` and `ask()` many times.

This is what the CLI, the eval and (later) the HTTP API share, so all of them answer alike.
Per-call overrides (top_k, mode) never change the shared settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from assistant.answer import Citation, ExtractiveAnswerer
from assistant.condense import condense
from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.retrieve import HybridRetriever, Passage, RetrievalResult
from assistant.settings import Settings


@dataclass
class AskResult:
    question: str
    standalone_question: str
    answer: str
    abstained: bool
    confidence: float
    citations: list[Citation]
    passages: list[Passage]
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The stable machine-readable shape (`ask --json`, the API)."""
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "abstained": self.abstained,
            "confidence": self.confidence,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "timings": self.timings,
        }


class Assistant:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or Embedder(self.settings.model)
        self.store = IndexStore.open(self.settings.index_dir, self.embedder.name, self.embedder.dim)
        self.retriever = HybridRetriever(self.store, self.embedder, self.settings)
        self.answerer = ExtractiveAnswerer(self.settings.abstain_threshold, self.settings.max_answer_sentences)

    def warm_up(self) -> None:
        """Load the model and BM25 so the first question pays no start-up cost."""
        self.retriever.lexical()
        self.embedder.encode_query("warm up")

    def search(self, query: str, top_k: int | None = None, mode: str = "hybrid") -> RetrievalResult:
        return self.retriever.run(query, top_k=top_k, mode=mode)

    def ask(self, question: str, history: list[str] | None = None, top_k: int | None = None) -> AskResult:
        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        started = time.perf_counter()
        t0 = time.perf_counter()
        condensed = condense(question, history)
        timings = {"condense_ms": round((time.perf_counter() - t0) * 1000, 2)}
        retrieval = self.retriever.run(condensed.standalone, top_k=top_k or max(self.settings.top_k, 8))
        timings.update(retrieval.timings)
        t0 = time.perf_counter()
        result = self.answerer.run(condensed, retrieval.passages, self.retriever.stats)
        timings["answer_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return AskResult(question, condensed.standalone, result.text, result.abstained, result.confidence,
                         result.citations, retrieval.passages, timings)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
