"""Turn a follow-up question into a standalone one, without an LLM.

A follow-up that leans on the conversation ("And how did he respond to that?") gets the most
recent earlier question attached as context, so retrieval sees what "that" and "he" refer to.
The answerer weighs the attached context lower than the question's own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from assistant.text import content_terms

_REFERRING = {
    "it", "its", "that", "this", "those", "these", "they", "them", "their", "theirs", "he", "him", "his",
    "she", "her", "hers", "there", "then", "such", "same", "former", "latter",
}
_OPENERS = ("and ", "but ", "so ", "also ", "what about", "how about", "then ", "or ")


@dataclass
class Condensed:
    question: str  # the user's question as asked
    standalone: str  # what retrieval sees
    context_terms: list[str] = field(default_factory=list)  # terms that came from the history


def needs_context(question: str) -> bool:
    lower = question.strip().lower()
    words = re.findall(r"[a-z']+", lower)
    if any(w in _REFERRING for w in words) or lower.startswith(_OPENERS):
        return True
    return len(content_terms(question)) <= 1


def condense(question: str, history: list[str] | None) -> Condensed:
    history = [h for h in (history or []) if h and h.strip()]
    if not history or not needs_context(question):
        return Condensed(question, question)
    context = history[-1].strip()
    own = set(content_terms(question))
    extra = [t for t in dict.fromkeys(content_terms(context)) if t not in own]
    return Condensed(question, f"{question.strip()} (context: {context})", extra)
