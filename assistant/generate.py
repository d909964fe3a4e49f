"""Generative answers: an LLM writes from the retrieved passages, the verifier checks every
citation, and the extractive answer stands in whenever the LLM fails or nothing it says holds up.

Steps for one question (`GenerativeAnswerer.run`):
1. the extractive answerer runs first (cheap): with `llm_gate`, a question whose retrieval
   confidence is below `abstain_threshold` is abstained on without asking the model;
2. passages are packed into the context window and the `answer` prompt is rendered;
3. the backend streams (or returns) a draft; any `LLMError` becomes a warning plus the fallback,
   and a context overflow is retried once with fewer passages;
4. `assistant.verify` checks the draft; unsupported sentences are marked or removed, and when no
   sentence is supported the extractive answer (or an abstention) is used, with the reason.
Follow-up questions are condensed by the LLM (`condense` prompt), with the heuristic as fallback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import replace

import jinja2
import numpy as np

from assistant.answer import NO_ANSWER, Answerer
from assistant.condense import Condensed, condense, needs_context
from assistant.llm import CallStats, ChatBackend, LLMError
from assistant.prompting import ContextPack, Prompts, answer_messages
from assistant.retrieve import CorpusStats
from assistant.settings import Settings
from assistant.text import content_terms
from assistant.types import Answer, Citation, EventKind, Passage, UnsupportedSentence
from assistant.verify import Claim, Verifier, assemble, has_term

Event = tuple[EventKind, str]  # ("token" | "status" | "warning", text)
# A model that starts echoing the prompt's own structure has stopped answering.
STOP = ["</source>", "<source", "\nQuestion:"]


def from_extractive(answer: Answer, fallback_reason: str) -> Answer:
    """The extractive answer standing in for the LLM's, with the reason."""
    return replace(answer, backend="extractive", fallback_reason=fallback_reason)


class GenerativeAnswerer:
    """One LLM backend wired to prompts, the verifier and the extractive fallback."""

    def __init__(self, name: str, backend: ChatBackend, settings: Settings, verifier: Verifier,
                 extractive: Answerer, prompts: Prompts | None = None) -> None:
        if settings.unsupported_policy not in ("mark", "remove"):
            raise ValueError(f"unsupported_policy must be 'mark' or 'remove', not {settings.unsupported_policy!r}")
        if settings.fallback not in ("extractive", "abstain"):
            raise ValueError(f"fallback must be 'extractive' or 'abstain', not {settings.fallback!r}")
        self.name = name
        self.backend = backend
        self.settings = settings
        self.verifier = verifier
        self.extractive = extractive
        self.prompts = prompts or Prompts(settings.prompts_dir or None)

    # -- follow-ups ---------------------------------------------------------------------------

    def condense(self, question: str, history: list[str] | None) -> tuple[Condensed, list[str]]:
        """The LLM's standalone rewrite of a follow-up, when it keeps the question's own words;
        otherwise the heuristic. Returns the result and any warning."""
        earlier = [h.strip() for h in (history or []) if h and h.strip()]
        heuristic = condense(question, earlier)
        if not earlier or not needs_context(question):
            return heuristic, []
        try:
            messages = self.prompts.messages("condense", question=question, history=earlier[-3:])
            raw = self.backend.complete(messages, max_tokens=64, temperature=0.0, stop=["\n"])
        except LLMError as exc:
            return heuristic, [f"{exc}; follow-up condensed without the LLM"]
        except jinja2.TemplateError as exc:
            return heuristic, [f"{self.name} backend: {_template_problem(exc)}; follow-up condensed without the LLM"]
        rewrite = _first_line(raw)
        if not _plausible_rewrite(rewrite, question):
            return heuristic, []
        own = set(content_terms(question))
        extra = [t for t in dict.fromkeys(content_terms(rewrite)) if t not in own]
        return Condensed(question, rewrite, extra), []

    # -- answers ------------------------------------------------------------------------------

    def run(self, condensed: Condensed, passages: list[Passage], stats: CorpusStats,
            stream: bool = True, query_vector: np.ndarray | None = None) -> Generator[Event, None, Answer]:
        s = self.settings
        extractive = self.extractive.run(condensed, passages, stats, query_vector)
        if s.llm_gate and extractive.abstained:
            return from_extractive(extractive, f"answer confidence {extractive.confidence:.3f} is below the "
                                               f"abstain threshold {self.extractive.abstain_threshold:.3f}: "
                                               f"the {self.name} model was not asked")
        question = condensed.standalone
        context_tokens = s.llm_context_tokens
        warnings: list[str] = []
        call = CallStats()
        draft = ""
        shown: list[str] = []  # pieces already streamed to the user
        pack: ContextPack | None = None
        started = time.perf_counter()
        for attempt in range(2):
            try:
                messages, pack = answer_messages(self.prompts, question, passages, context_tokens,
                                                 s.llm_answer_tokens, NO_ANSWER, s.llm_max_sources)
                if stream:
                    yield ("status", f"asking the {self.name} model")
                draft = yield from self._call(messages, stream, call, shown)
                break
            except LLMError as exc:
                if exc.kind == "context_overflow" and attempt == 0:
                    context_tokens = int(context_tokens * 0.6)
                    warnings.append(f"{exc}; retried with fewer passages")
                    continue
                warnings.append(str(exc))
                if stream:
                    yield ("warning", str(exc))
                return self._fallback(extractive, str(exc), warnings, call, bool(shown), started, pack)
            except (ValueError, jinja2.TemplateError) as exc:  # no room for sources; a broken user template
                warnings.append(f"{self.name} backend: {_template_problem(exc)}")
                return self._fallback(extractive, warnings[-1], warnings, call, False, started, pack)
        assert pack is not None
        llm_ms = (time.perf_counter() - started) * 1000
        if stream:
            yield ("status", "checking citations")
        t0 = time.perf_counter()
        verification = self.verifier.verify(draft, pack.sources, NO_ANSWER)
        timings = self._timings(call, llm_ms, pack)
        timings["verify_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        debug: dict[str, object] = {"draft": draft, "context": pack.report(), "llm": call.to_dict(),
                 "claims": [{"sentence": c.text, "cited": c.cited, "supported": c.supported, "reason": c.reason,
                             "supports": [x.to_dict() for x in c.supports]} for c in verification.claims]}
        if verification.abstained:
            return Answer(NO_ANSWER, True, [], extractive.confidence, backend=self.name, model=call.model,
                          warnings=warnings, revised=stream and draft.strip() != NO_ANSWER, timings=timings,
                          debug=debug)
        out = assemble(verification, pack.sources, s.unsupported_policy)
        if out.citations and not _on_topic(condensed.standalone, out.citations, verification.supported):
            reason = f"the {self.name} model's answer does not address the question (its supported sentences share no word with it)"
            debug["off_topic"] = True
            result = self._fallback(extractive, reason, warnings, call, True, started, pack)
            result.unsupported = _unplaced(out.unsupported) + [
                c.rejected("does not address the question") for c in verification.supported]
            result.dropped_citations = out.dropped_citations
            result.timings.update(timings)
            result.debug.update(debug)
            return result
        if not out.citations:
            reason = f"no sentence of the {self.name} model's answer was supported by the passage it cites"
            result = self._fallback(extractive, reason, warnings, call, True, started, pack)
            result.unsupported, result.dropped_citations = _unplaced(out.unsupported), out.dropped_citations
            result.timings.update(timings)
            result.debug.update(debug)
            return result
        return Answer(out.text, False, out.citations, extractive.confidence, backend=self.name, model=call.model,
                      warnings=warnings, unsupported=out.unsupported, dropped_citations=out.dropped_citations,
                      revised=stream and out.text != draft.strip(), timings=timings, debug=debug)

    def _call(self, messages: list[dict[str, str]], stream: bool, call: CallStats,
              pieces: list[str]) -> Generator[Event, None, str]:
        s = self.settings
        if not stream:
            return self.backend.complete(messages, max_tokens=s.llm_answer_tokens, temperature=s.llm_temperature,
                                         stop=STOP, stats=call)
        for piece in self.backend.stream(messages, max_tokens=s.llm_answer_tokens, temperature=s.llm_temperature,
                                         stop=STOP, stats=call):
            pieces.append(piece)
            yield ("token", piece)
        return "".join(pieces)

    def _fallback(self, extractive: Answer, reason: str, warnings: list[str], call: CallStats,
                  drafted: bool, started: float, pack: ContextPack | None) -> Answer:
        if self.settings.fallback == "abstain" or extractive.abstained:
            result = Answer(NO_ANSWER, True, [], extractive.confidence,
                            backend=self.name if not extractive.abstained else "extractive",
                            fallback_reason=f"{reason}; abstained")
        else:
            result = from_extractive(extractive, f"{reason}; showing the extractive answer")
        result.model = call.model
        result.warnings = warnings
        result.revised = drafted
        result.timings = self._timings(call, (time.perf_counter() - started) * 1000, pack)
        result.debug = {"llm": call.to_dict()} | ({"context": pack.report()} if pack else {})
        return result

    @staticmethod
    def _timings(call: CallStats, llm_ms: float, pack: ContextPack | None) -> dict[str, float]:
        timings: dict[str, float] = {"llm_ms": round(llm_ms, 2)}
        if call.ttft_ms is not None:
            timings["llm_ttft_ms"] = call.ttft_ms
        if call.tokens_per_s is not None:
            timings["llm_tokens_per_s"] = call.tokens_per_s
        if call.completion_tokens is not None:
            timings["llm_completion_tokens"] = call.completion_tokens
        if call.prompt_tokens is not None:
            timings["llm_prompt_tokens"] = call.prompt_tokens
        if pack is not None:
            timings["context_sources"] = len(pack.sources)
            timings["context_trimmed"] = len(pack.trimmed)
            timings["context_dropped"] = len(pack.dropped)
        return timings


def _on_topic(question: str, citations: list[Citation], supported: list[Claim]) -> bool:
    """True sentences about something else do not answer the question: at least one of the
    question's words must appear in a supported sentence or the source text it cites."""
    asked = set(content_terms(question))
    said: set[str] = set()
    for text in [c.text for c in supported] + [c.quote for c in citations]:
        said.update(content_terms(text))
    return not asked or any(has_term(said, t) for t in asked)


def _template_problem(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateError):
        where = getattr(exc, "name", None) or getattr(exc, "filename", None) or "a prompt template"
        return f"prompt template {where} is broken: {type(exc).__name__}: {exc}"
    return str(exc)


def _unplaced(unsupported: list[UnsupportedSentence]) -> list[UnsupportedSentence]:
    """Rejected sentences of a draft that is not shown: no offsets into the answer (it is another text)."""
    return [replace(u, start=None, end=None) for u in unsupported]


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = re.sub(r"^(standalone question|question|rewritten question)\s*:\s*", "", line.strip(), flags=re.I)
        line = line.strip().strip("\"'\u201c\u201d").strip()
        if line:
            return line
    return ""


def _plausible_rewrite(rewrite: str, question: str) -> bool:
    """A rewrite, not an answer or a ramble: keeps at least half of the question's own terms,
    adds something, has no citation markers and is of question length."""
    words = rewrite.split()
    if not 3 <= len(words) <= 60 or "[" in rewrite:
        return False
    own = set(content_terms(question))
    new = set(content_terms(rewrite))
    if not new - own:
        return False
    return not own or len(own & new) / len(own) >= 0.5
