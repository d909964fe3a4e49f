"""The assistant as one object: open an index once, then `search()` and `ask()` many times.

This is what the CLI, the eval and the HTTP API share, so all of them answer alike.
Per-call overrides (top_k, mode, backend) never change the shared settings. `ask_events()` streams
(LLM tokens, then the verified result); an LLM backend (assistant.generate) is built on first use.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from assistant.answer import NO_ANSWER, make_answerer, unresolved_reference
from assistant.condense import Condensed, condense
from assistant.embed import Embedder
from assistant.index import index_backend, open_store
from assistant.overview import about_target, answer_about
from assistant.retrieve import HybridRetriever
from assistant.settings import Settings
from assistant.types import Answer, AskResult, EventKind, RetrievalResult, StreamEvent

if TYPE_CHECKING:  # assistant.generate (and the LLM stack) load only when an LLM backend is used
    from assistant.generate import GenerativeAnswerer


class Assistant:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or Embedder(self.settings.model, index_backend(self.settings))
        self.store = open_store(self.settings, self.embedder.name, self.embedder.dim)
        self.retriever = HybridRetriever(self.store, self.embedder, self.settings)
        self.answerer = make_answerer(self.settings, self.store, self.embedder)
        self._generators: dict[str, GenerativeAnswerer] = {}
        self._generators_lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model and BM25 so the first question pays no start-up cost."""
        self.retriever.lexical()
        self.embedder.encode_query("warm up")

    def search(self, query: str, top_k: int | None = None, mode: str = "hybrid") -> RetrievalResult:
        return self.retriever.run(query, top_k=top_k, mode=mode)

    def answer_backends(self) -> list[str]:
        """Backends a caller may pick: extractive, then the LLM backends the settings configure."""
        from assistant.llm import configured_backends

        return ["extractive", *configured_backends(self.settings)]

    def generator(self, name: str) -> GenerativeAnswerer:
        """The generative answerer for LLM backend `name`, built on first use (LLMError if unusable)."""
        with self._generators_lock:
            if name not in self._generators:
                from assistant.generate import GenerativeAnswerer
                from assistant.llm import get_backend
                from assistant.verify import Verifier

                verifier = Verifier(self.embedder, self.settings.verify_threshold)
                self._generators[name] = GenerativeAnswerer(name, get_backend(name, self.settings), self.settings,
                                                            verifier, self.answerer)
            return self._generators[name]

    def ask(self, question: str, history: list[str] | None = None, top_k: int | None = None,
            backend: str | None = None) -> AskResult:
        """The verified answer (LLM backends are called without streaming)."""
        for event in self.ask_events(question, history, top_k, backend, stream=False):
            if event.kind == "final" and event.result is not None:
                return event.result
        raise RuntimeError("the answer ended without a result")  # pragma: no cover

    def ask_events(self, question: str, history: list[str] | None = None, top_k: int | None = None,
                   backend: str | None = None, stream: bool = True) -> Iterator[StreamEvent]:
        """Answer as events: "token" pieces (LLM tokens, or the extractive answer word by word),
        "status"/"warning" notes, then one "final" with the AskResult."""
        from assistant.llm import LLMError, answer_backends

        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        name = backend or self.settings.backend
        if name not in (known := answer_backends()):
            raise ValueError(f"unknown answer backend {name!r}; use one of {', '.join(known)}")
        started = time.perf_counter()
        warnings: list[str] = []
        generator = None
        unavailable = None
        if name != "extractive":
            try:
                generator = self.generator(name)
            except (LLMError, ValueError) as exc:  # not configured, or configured wrong (a bad setting)
                unavailable = str(exc) if isinstance(exc, LLMError) else f"{name} backend: {exc}"
                warnings.append(unavailable)
                if stream:
                    yield StreamEvent("warning", unavailable)
        t0 = time.perf_counter()
        if generator is not None:
            condensed, notes = generator.condense(question, history)
            warnings.extend(notes)
        else:
            condensed = condense(question, history)
        timings = {"condense_ms": round((time.perf_counter() - t0) * 1000, 2)}
        top_k = top_k or max(self.settings.top_k, self.settings.answer_passages)
        retrieval = self.retriever.run(condensed.standalone, top_k=top_k)
        timings.update(retrieval.timings)
        t0 = time.perf_counter()
        if generator is None:
            answer = self._extractive(condensed, retrieval)
        else:
            answer = yield from _relay(generator.run(condensed, retrieval.passages, self.retriever.stats, stream,
                                                     retrieval.query_vector))
            timings.update(answer.timings)
        timings["answer_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
        reason = f"{unavailable}; showing the extractive answer" if unavailable else answer.fallback_reason
        result = AskResult.of(question, condensed.standalone, answer, retrieval.passages, timings=timings,
                              warnings=warnings + answer.warnings, fallback_reason=reason)
        if stream and generator is None:
            for piece in re.findall(r"\S+\s*", result.answer):
                yield StreamEvent("token", piece)
        yield StreamEvent("final", result=result)

    def _extractive(self, condensed: Condensed, retrieval: RetrievalResult) -> Answer:
        """The "what is X about" overview, an abstention on a dangling reference, or the answerer's pick."""
        about = answer_about(about_target(condensed.question), self.store, retrieval.passages)
        if about is not None:
            return about
        if unresolved_reference(condensed):
            return Answer(NO_ANSWER, True, [], 0.0)
        return self.answerer.run(condensed, retrieval.passages, self.retriever.stats, retrieval.query_vector)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _relay(events: Generator[tuple[EventKind, str], None, Answer]) -> Generator[StreamEvent, None, Answer]:
    """The answerer's (kind, text) events as StreamEvents; returns its result. Closing this
    closes the answerer too (a client that goes away stops the generation)."""
    try:
        while True:
            try:
                kind, text = next(events)
            except StopIteration as stop:
                return stop.value
            yield StreamEvent(kind, text)
    finally:
        events.close()
