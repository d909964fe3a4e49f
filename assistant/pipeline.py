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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.answer import NO_ANSWER, Citation, ExtractiveAnswer, make_answerer, unresolved_reference
from assistant.condense import condense
from assistant.embed import Embedder
from assistant.index import index_backend, open_store
from assistant.overview import about_target, answer_about
from assistant.retrieve import HybridRetriever, Passage, RetrievalResult
from assistant.settings import Settings

if TYPE_CHECKING:  # assistant.generate (and the LLM stack) load only when an LLM backend is used
    from assistant.generate import GenerativeAnswerer


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
    # Who produced `answer` ("extractive", "openai", "local"), and why not the one asked for.
    backend: str = "extractive"
    model: str = ""  # the LLM that was asked, if any
    fallback_reason: str | None = None
    warnings: list[str] = field(default_factory=list)  # LLM failures and the like, for the user
    unsupported: list[dict[str, Any]] = field(default_factory=list)  # generated sentences the verifier rejected
    dropped_citations: list[dict[str, Any]] = field(default_factory=list)  # [n] to no source / a non-supporting one
    revised: bool = False  # streamed draft differs from `answer`: replace it
    debug: dict[str, Any] = field(default_factory=dict)  # draft, context packing, per-sentence support

    def verified_answer(self) -> str:
        """The answer without sentences marked unsupported (what the citations vouch for)."""
        text = self.answer
        for u in sorted(self.unsupported, key=lambda u: -int(u.get("start", -1))):
            if "start" in u and "end" in u:
                text = text[: u["start"]] + text[u["end"] :].replace(" [unverified]", "", 1)
        return " ".join(text.split())

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
            "backend": self.backend,
            "model": self.model,
            "fallback_reason": self.fallback_reason,
            "warnings": self.warnings,
            "unsupported": self.unsupported,
            "dropped_citations": self.dropped_citations,
            "revised": self.revised,
            "debug": self.debug,
        }


@dataclass
class StreamEvent:
    """One event of a streamed answer: text pieces first, then one `final` with the full result.

    Kinds: "token" (a piece of the answer text), "status" (what is happening, e.g. "checking
    citations"), "warning" (an LLM failure; the answer falls back), "final" (the AskResult; when
    `result.revised` the streamed draft must be replaced by `result.answer`). Consumers ignore
    kinds they do not know.
    """

    kind: str
    text: str = ""
    result: AskResult | None = None


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
            about = answer_about(about_target(condensed.question), self.store, retrieval.passages)
            if about is not None:
                answer = about
            elif unresolved_reference(condensed):
                answer = ExtractiveAnswer(NO_ANSWER, True, [], 0.0)
            else:
                answer = self.answerer.run(condensed, retrieval.passages, self.retriever.stats, retrieval.query_vector)
            timings["answer_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
            reason = f"{unavailable}; showing the extractive answer" if unavailable else None
            result = AskResult(question, condensed.standalone, answer.text, answer.abstained, answer.confidence,
                               answer.citations, retrieval.passages, timings, fallback_reason=reason,
                               warnings=warnings)
            if stream:
                for piece in re.findall(r"\S+\s*", result.answer):
                    yield StreamEvent("token", piece)
            yield StreamEvent("final", result=result)
            return
        generated = yield from _relay(generator.run(condensed, retrieval.passages, self.retriever.stats, stream,
                                                    retrieval.query_vector))
        timings.update(generated.timings)
        timings["answer_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        timings["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
        yield StreamEvent("final", result=AskResult(
            question, condensed.standalone, generated.text, generated.abstained, generated.confidence,
            generated.citations, retrieval.passages, timings, backend=generated.backend, model=generated.model,
            fallback_reason=generated.fallback_reason, warnings=warnings + generated.warnings,
            unsupported=generated.unsupported, dropped_citations=generated.dropped_citations,
            revised=generated.revised, debug=generated.debug))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _relay(events: Generator[tuple[str, str], None, Any]) -> Generator[StreamEvent, None, Any]:
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
