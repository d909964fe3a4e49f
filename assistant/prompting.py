"""Prompt templates (jinja2 files in `prompts/`) and packing passages into the context window.

Templates are plain files so they can be read, reviewed and replaced without touching code: a
user folder (`prompts_dir` setting) is searched before the built-in `assistant.prompts`. A
template defines a `system` and a `user` block, each one chat message, and may add a worked
example as `example_user` and `example_assistant` blocks (sent between them).
Document text is untrusted: the `neutralize` filter defuses `<source>` look-alikes so a document
cannot close its own delimiter and pose as instructions.

Packing counts tokens with tiktoken (cl100k_base, offline). Passages go in whole, in retrieval
order; one that does not fit is cut at a sentence boundary, and what was cut or left out is
reported (`ContextPack.report()`), never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import assistant.prompts as builtin_prompts
from assistant.text import split_sentences
from assistant.tokens import count_tokens
from assistant.types import Passage

BUILTIN_DIR = Path(builtin_prompts.__file__).resolve().parent  # the package `assistant.prompts` (prompts/)
# tiktoken's cl100k_base is not the served model's tokenizer; small-vocabulary models need up to
# ~25% more tokens for the same English text, so budgets are planned with this much slack.
TOKEN_SLACK = 1.25

_DELIMITER = re.compile(r"<(\s*/?\s*source\b)", re.IGNORECASE)


def neutralize(text: Any, attribute: bool = False) -> str:
    """Untrusted text with `<source`/`</source` look-alikes defused (and quotes, in an attribute)."""
    out = _DELIMITER.sub(lambda m: "\u2039" + m.group(1), str(text))
    return out.replace('"', "'").replace("\n", " ") if attribute else out


# Template blocks in message order: an optional worked example (one user turn and the reply
# wanted) shows small models the format better than any instruction does.
_BLOCKS = [("system", "system"), ("example_user", "user"), ("example_assistant", "assistant"), ("user", "user")]


class Prompts:
    """Renders `<name>.j2` into chat messages; a user folder overrides the built-in templates."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        folders = []
        if user_dir:
            path = Path(user_dir).expanduser()
            if not path.is_dir():
                raise ValueError(f"prompts folder {path} does not exist (ASSISTANT_PROMPTS_DIR)")
            folders.append(str(path))
        folders.append(str(BUILTIN_DIR))
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(folders), autoescape=False,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["neutralize"] = neutralize

    def messages(self, name: str, **variables: Any) -> list[dict[str, str]]:
        """Messages from the template's blocks (a template without blocks is one user message)."""
        template = self.env.get_template(f"{name}.j2")
        if not template.blocks:
            return [{"role": "user", "content": template.render(**variables).strip()}]
        context = template.new_context(variables)
        messages = []
        for block_name, role in _BLOCKS:
            block = template.blocks.get(block_name)
            if block is not None:
                content = "".join(block(context)).strip()
                if content:
                    messages.append({"role": role, "content": content})
        return messages


@dataclass
class PackedPassage:
    """A passage as the model sees it: number `n`, and the text that fit (a sentence-aligned prefix)."""

    n: int
    passage: Passage
    text: str
    trimmed: bool = False

    @property
    def title(self) -> str:
        return self.passage.title

    @property
    def start(self) -> int:  # document offset of `text`
        return self.passage.start

    @property
    def end(self) -> int:
        return self.passage.start + len(self.text)


@dataclass
class ContextPack:
    sources: list[PackedPassage]
    budget_tokens: int
    used_tokens: int
    trimmed: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """For the result's debug info: what went in, what was cut and what did not fit."""
        return {"budget_tokens": self.budget_tokens, "used_tokens": self.used_tokens,
                "sources": [{"n": s.n, "chunk_id": s.passage.chunk_id, "chars": len(s.text), "trimmed": s.trimmed}
                            for s in self.sources],
                "trimmed": self.trimmed, "dropped": self.dropped}


def _tokens(text: str) -> int:
    return int(count_tokens(text) * TOKEN_SLACK) + 1


def pack_passages(passages: list[Passage], budget_tokens: int, per_source_overhead: int = 12,
                  max_sources: int | None = None) -> ContextPack:
    """Whole passages in order while they fit; the first that does not is cut after its last whole
    sentence that fits (if any sentence fits); the rest are reported as dropped."""
    sources: list[PackedPassage] = []
    trimmed: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    used = 0
    full = False
    for passage in passages:
        if full or (max_sources is not None and len(sources) >= max_sources):
            dropped.append({"chunk_id": passage.chunk_id, "title": passage.title,
                            "reason": "context budget full" if full else "source limit"})
            continue
        room = budget_tokens - used - per_source_overhead - _tokens(passage.title)
        cost = _tokens(passage.text)
        if cost <= room:
            sources.append(PackedPassage(len(sources) + 1, passage, passage.text))
            used += cost + per_source_overhead + _tokens(passage.title)
            continue
        full = True
        kept = ""
        for sentence in split_sentences(passage.text):
            candidate = passage.text[: sentence.end]
            if _tokens(candidate) > room:
                break
            kept = candidate
        if kept:
            sources.append(PackedPassage(len(sources) + 1, passage, kept, trimmed=True))
            used += _tokens(kept) + per_source_overhead + _tokens(passage.title)
            trimmed.append({"chunk_id": passage.chunk_id, "title": passage.title, "kept_chars": len(kept),
                            "cut_chars": len(passage.text) - len(kept)})
        else:
            dropped.append({"chunk_id": passage.chunk_id, "title": passage.title, "reason": "context budget full"})
    return ContextPack(sources, budget_tokens, used, trimmed, dropped)


def answer_messages(prompts: Prompts, question: str, passages: list[Passage], context_tokens: int,
                    answer_tokens: int, no_answer: str, max_sources: int | None = None
                    ) -> tuple[list[dict[str, str]], ContextPack]:
    """The answer prompt with as many passages as fit in `context_tokens - answer_tokens`."""
    skeleton = prompts.messages("answer", question=question, sources=[], no_answer=no_answer)
    fixed = sum(_tokens(m["content"]) + 4 for m in skeleton) + 8  # chat-template tokens per message
    budget = context_tokens - answer_tokens - fixed
    if budget <= 0:
        raise ValueError(f"llm_context_tokens={context_tokens} leaves no room for sources after the prompt and "
                         f"llm_answer_tokens={answer_tokens}")
    overhead = _tokens('<source n="10" title="">\n\n</source>\n')
    pack = pack_passages(passages, budget, per_source_overhead=overhead, max_sources=max_sources)
    sources = [{"n": s.n, "title": s.title, "text": s.text} for s in pack.sources]
    messages = prompts.messages("answer", question=question, sources=sources, no_answer=no_answer)
    return messages, pack
