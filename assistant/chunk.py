"""Token-aware chunking of a streamed document into contiguous, overlapping passages.

Chunks break at sentence boundaries, are at most `chunk_tokens` tokens (cl100k by default, or what
`count` counts: `make_chunker` passes the model's word pieces for CHUNK_TOKENIZER=model), and carry the
last sentences of the previous chunk (up to `overlap_tokens`). A line of 8+ words seen before
in the same document (news pages repeat their lead and embedded posts) is dropped and forces a
chunk break, so every chunk stays one contiguous slice `text[start:end]` of the document.
An optional `fits` check (the embedding model's own token limit) splits any chunk further that
the model would otherwise truncate silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.text import normalize, split_sentences
from assistant.tokens import get_encoding
from assistant.types import Span

if TYPE_CHECKING:
    from assistant.embed import Embedder
    from assistant.settings import Settings

_BUFFER_CHARS = 1 << 16
_MAX_BUFFER_CHARS = 1 << 22


EMBED_CONTEXTS = ("title", "none")


def embedding_text(title: str, text: str, context: str = "none") -> str:
    """What the embedding model sees for a chunk (the stored, shown and cited text stays `text`).

    "title": a chunk that does not begin with its document's title gets the title in front, so a
    passage deep in a document still carries the document's topic (on BEIR SciFact train this
    raised dense nDCG@10 from 0.681 to 0.691, but it lowered the news golden set; see
    benchmarks/RESULTS.md). "none" (the default): the chunk alone."""
    if context not in EMBED_CONTEXTS:
        raise ValueError(f"unknown embed_context {context!r}: use one of {', '.join(EMBED_CONTEXTS)}")
    title = title.strip()
    if context == "none" or not title or text.lstrip().startswith(title):
        return text
    return f"{title}\n\n{text}"


@dataclass(frozen=True)
class Chunk:
    ord: int
    start: int
    end: int
    text: str
    n_tokens: int


@dataclass(frozen=True)
class _Sentence:
    start: int
    end: int
    text: str
    gap: str  # whitespace between the previous sentence and this one
    n_tokens: int


_BREAK = None  # marks a dropped duplicate line: chunks must not span it


class Chunker:
    def __init__(
        self,
        chunk_tokens: int = 160,
        overlap_tokens: int = 32,
        fits: Callable[[str], bool] | None = None,
        dedupe_min_words: int = 8,
        count: Callable[[str], int] | None = None,
    ) -> None:
        if chunk_tokens < 8:
            raise ValueError("chunk_tokens must be at least 8")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError("chunk_overlap must be >= 0 and smaller than chunk_tokens")
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.fits = fits
        self.dedupe_min_words = dedupe_min_words
        if count is None:
            encoding = get_encoding("cl100k_base")

            def count(text: str) -> int:
                return len(encoding.encode_ordinary(text))
        self._count = count

    def count(self, text: str) -> int:
        """Tokens of `text` in the unit chunk sizes are given in (cl100k, or the `count` passed in)."""
        return self._count(text)

    # -- sentence stream -------------------------------------------------------------------

    def _blocks(self, segments: Iterable[str]) -> Iterator[tuple[int, str]]:
        """(offset, text) blocks cut at paragraph breaks, so no sentence spans two blocks."""
        buffer = ""
        offset = 0
        for piece in segments:
            buffer += piece
            if len(buffer) < _BUFFER_CHARS:
                continue
            cut = _line_break(buffer)
            if cut <= 0:
                continue
            yield offset, buffer[: cut + 1]
            offset += cut + 1
            buffer = buffer[cut + 1 :]
        if buffer:
            yield offset, buffer

    def _sentences(self, segments: Iterable[str]) -> Iterator[_Sentence | None]:
        seen_lines: set[bytes] = set()
        prev_end = 0
        pending_ws = ""  # whitespace from the end of the previous block
        for offset, block in self._blocks(segments):
            local_prev = 0
            for line in _logical_lines(block):
                words = len(line.text.split())
                if words >= self.dedupe_min_words:
                    key = hashlib.blake2b(normalize(line.text).encode(), digest_size=16).digest()
                    if key in seen_lines:
                        yield _BREAK
                        local_prev = line.end
                        pending_ws = ""
                        prev_end = offset + line.end
                        continue
                    seen_lines.add(key)
                for sentence in split_sentences(line.text, offset + line.start):
                    local_start = sentence.start - offset
                    gap = pending_ws + block[local_prev:local_start]
                    pending_ws = ""
                    if sentence.start < prev_end:
                        gap = ""
                    pieces = self._split_long(sentence)
                    for i, piece in enumerate(pieces):
                        if i:  # the space between two pieces of a split sentence
                            gap = sentence.text[pieces[i - 1].end - sentence.start : piece.start - sentence.start]
                        yield _Sentence(piece.start, piece.end, piece.text, gap, self.count(gap + piece.text))
                    local_prev = sentence.end - offset
                    prev_end = sentence.end
            pending_ws += block[local_prev:]

    def _split_long(self, sentence: Span) -> list[Span]:
        """A sentence longer than a chunk is cut at word boundaries into chunk-sized pieces."""
        if self.count(sentence.text) <= self.chunk_tokens:
            return [sentence]
        pieces: list[Span] = []
        start = 0
        count = 0
        last = 0
        for match in re.finditer(r"\S+", sentence.text):
            n = self.count(match.group()) + 1
            if count + n > self.chunk_tokens and last > start:
                pieces.append(_subspan(sentence, start, last))
                start, count = match.start(), 0
            count += n
            last = match.end()
        pieces.append(_subspan(sentence, start, len(sentence.text)))
        return [p for p in pieces if p.text]

    # -- packing ---------------------------------------------------------------------------

    def chunks(self, segments: Iterable[str]) -> Iterator[Chunk]:
        ordinal = 0
        current: list[_Sentence] = []
        tokens = 0
        for sentence in self._sentences(segments):
            if sentence is _BREAK:
                for chunk in self._emit(current, ordinal):
                    ordinal += 1
                    yield chunk
                current, tokens = [], 0
                continue
            assert sentence is not None
            if current and tokens + sentence.n_tokens > self.chunk_tokens:
                for chunk in self._emit(current, ordinal):
                    ordinal += 1
                    yield chunk
                current = self._overlap(current)
                tokens = sum(s.n_tokens for s in current)
            current.append(sentence)
            tokens += sentence.n_tokens
        for chunk in self._emit(current, ordinal):
            ordinal += 1
            yield chunk

    def _overlap(self, sentences: list[_Sentence]) -> list[_Sentence]:
        kept: list[_Sentence] = []
        total = 0
        for sentence in reversed(sentences[1:]):
            if total + sentence.n_tokens > self.overlap_tokens:
                break
            kept.insert(0, sentence)
            total += sentence.n_tokens
        return kept

    def _emit(self, sentences: list[_Sentence], ordinal: int) -> Iterator[Chunk]:
        if not sentences:
            return
        text = sentences[0].text + "".join(s.gap + s.text for s in sentences[1:])
        n_tokens = self.count(text)  # gaps count too: the sum over sentences is only an estimate
        if (n_tokens <= self.chunk_tokens and (self.fits is None or self.fits(text))) or (
            len(sentences) == 1 and len(text) < 8
        ):
            yield Chunk(ordinal, sentences[0].start, sentences[-1].end, text, n_tokens)
            return
        if len(sentences) == 1:
            only = sentences[0]
            cut = only.text.rfind(" ", 0, len(only.text) // 2 + 1)
            if cut <= 0:
                cut = len(only.text) // 2
            left = Span(only.start, only.start + cut, only.text[:cut].rstrip())
            right_text = only.text[cut:]
            lead = len(right_text) - len(right_text.lstrip())
            right = Span(only.start + cut + lead, only.end, right_text.strip())
            halves = [[_Sentence(left.start, left.start + len(left.text), left.text, only.gap, self.count(left.text))],
                      [_Sentence(right.start, right.end, right.text, "", self.count(right.text))]]
        else:
            mid = len(sentences) // 2
            halves = [sentences[:mid], sentences[mid:]]
        for half in halves:
            for chunk in self._emit(half, ordinal):
                ordinal += 1
                yield chunk


CHUNK_TOKENIZERS = ("model", "cl100k")


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    """The ingest chunker for these settings: sizes in the model's word pieces (capped at what one
    model input holds) or in cl100k tokens (then every chunk is also checked against the model)."""
    if settings.chunk_tokenizer == "model":
        limit = embedder.piece_limit
        size = min(settings.chunk_tokens, limit)
        return Chunker(size, min(settings.chunk_overlap, size - 1), count=embedder.count_pieces)
    if settings.chunk_tokenizer == "cl100k":
        return Chunker(settings.chunk_tokens, settings.chunk_overlap, fits=embedder.fits)
    raise ValueError(f"chunk_tokenizer {settings.chunk_tokenizer!r} is not one of {', '.join(CHUNK_TOKENIZERS)} "
                     "(setting ASSISTANT_CHUNK_TOKENIZER)")


def _subspan(span: Span, start: int, end: int) -> Span:
    piece = span.text[start:end]
    stripped = piece.strip()
    lead = len(piece) - len(piece.lstrip())
    return Span(span.start + start + lead, span.start + start + lead + len(stripped), stripped)


def _line_break(buffer: str) -> int:
    """The last newline where a block may end without changing the logical lines (see
    `text._lines`: a line continues only when the next one starts lower case); else any newline
    once the buffer is large, so memory stays bounded; -1 when there is none."""
    pos = len(buffer) - 1
    while (pos := buffer.rfind("\n", 0, pos)) > 0:
        if not buffer[pos + 1].islower():
            return pos
    return buffer.rfind("\n") if len(buffer) > _MAX_BUFFER_CHARS else -1


def _logical_lines(text: str) -> Iterator[Span]:
    from assistant.text import _lines

    return _lines(text)
