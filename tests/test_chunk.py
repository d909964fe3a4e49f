"""Chunks are exact slices of the document, within the token limits, deduplicated and stable
however the text is streamed."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from assistant import loaders
from assistant.chunk import Chunk, Chunker, make_chunker
from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import Ingestor
from assistant.settings import Settings
from assistant.text import normalize
from assistant.tokens import count_tokens

LIMITS = Settings(index_dir=Path("unused"))

_WORDS = ("harbour council ferry budget winter library bridge station survey archive river market "
          "engineer report district museum farmer harvest pier schedule").split()


def _sentence(rng: random.Random, low: int = 4, high: int = 22) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(low, high))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice([".", ".", "!", "?"])


def _paragraph(rng: random.Random, sentences: int, wrap: int = 0) -> str:
    text = " ".join(_sentence(rng) for _ in range(sentences))
    if not wrap:
        return text
    lines, line = [], ""
    for word in text.split(" "):  # hard-wrapped: continuation lines start lower case
        if line and len(line) + len(word) > wrap:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def synthetic_document(seed: int = 11, paragraphs: int = 60) -> tuple[str, str]:
    """A messy document and the long paragraph it repeats."""
    rng = random.Random(seed)
    repeated = _paragraph(rng, 6)
    parts = ["Quarterly harbour report", repeated]
    for i in range(paragraphs):
        kind = i % 6
        if kind == 0:
            parts.append(_paragraph(rng, rng.randint(2, 9)))
        elif kind == 1:
            parts.append(_paragraph(rng, 8, wrap=64))  # soft-wrapped lines
        elif kind == 2:
            parts.append("\r\n".join(_sentence(rng) for _ in range(4)))  # Windows line ends
        elif kind == 3:
            parts.append(repeated)  # a repeated long paragraph (news pages repeat their lead)
        elif kind == 4:
            parts.append("\u2022\tCaf\u00e9 na\u00efve \u201cquoted\u201d \u2014 dash \U0001f30a wave.\tTabbed\t\tcells.")
        else:
            parts.append(_paragraph(rng, 3))
    # One sentence far longer than a chunk, and one "word" longer than a chunk.
    parts.append(" ".join(rng.choice(_WORDS) for _ in range(700)) + ".")
    parts.append("Checksum: " + "".join(rng.choice("abcdef0123456789") for _ in range(2500)) + " end.")
    parts.append(_paragraph(rng, 5))
    return "\n\n".join(parts) + "\n", repeated


def assert_valid_chunks(text: str, chunks: list[Chunk], chunk_tokens: int, embedder: Embedder | None = None) -> None:
    assert chunks, "no chunks"
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text, f"chunk {chunk.ord} is not text[start:end]"
        assert chunk.text == chunk.text.strip() and chunk.text
        tokens = count_tokens(chunk.text)
        assert tokens == chunk.n_tokens
        assert tokens <= chunk_tokens, f"chunk {chunk.ord} has {tokens} tokens > {chunk_tokens}"
        if embedder is not None:
            assert embedder.fits(chunk.text), f"chunk {chunk.ord} would be truncated by the model"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def duplicate_lines(text: str, min_words: int = 8) -> dict[str, list[int]]:
    """Lines of min_words+ words that occur more than once, by normalized text: their offsets."""
    seen: dict[str, list[int]] = {}
    for match in re.finditer(r"[^\n]+", text):
        line = match.group().strip()
        if len(line.split()) >= min_words:
            seen.setdefault(normalize(line), []).append(match.start() + match.group().index(line[0]))
    return {key: offsets for key, offsets in seen.items() if len(offsets) > 1}


def covered(chunks: list[Chunk], offset: int) -> bool:
    return any(c.start <= offset < c.end for c in chunks)


def assert_duplicates_once(text: str, chunks: list[Chunk]) -> int:
    dups = duplicate_lines(text)
    for key, offsets in dups.items():
        assert covered(chunks, offsets[0]), f"first copy of a repeated line is missing: {key[:60]!r}"
        for later in offsets[1:]:
            assert not covered(chunks, later), f"repeated line indexed again at {later}: {key[:60]!r}"
    return len(dups)


# -- the shared news corpus -------------------------------------------------------------


def test_news_chunks_are_exact_slices_within_limits(news_dir: Path, embedder: Embedder) -> None:
    chunker = Chunker(LIMITS.chunk_tokens, LIMITS.chunk_overlap, fits=embedder.fits)
    repeated_total = 0
    for path in sorted(news_dir.glob("*.txt")):
        text = loaders.text_of(loaders.load(path))
        chunks = list(chunker.chunks(loaders.load(path).segments))
        assert_valid_chunks(text, chunks, LIMITS.chunk_tokens, embedder)
        repeated_total += assert_duplicates_once(text, chunks)
        # Nothing but repeated lines is lost: every other line of text is in some chunk.
        dup_offsets = {o for offsets in duplicate_lines(text).values() for o in offsets[1:]}
        for match in re.finditer(r"\S[^\n]*", text):
            if match.start() not in dup_offsets:
                assert covered(chunks, match.start()), f"{path.name}: lost {match.group()[:60]!r}"
    assert repeated_total > 0, "the news corpus is known to repeat paragraphs; the check saw none"


def test_stored_chunk_records_match_the_files(
    news_dir: Path, settings: Settings, embedder: Embedder, check_index
) -> None:
    report = Ingestor(settings, embedder=embedder).ingest_paths([news_dir], progress=False)
    assert report.failed == [] and report.count("added") == len(list(news_dir.glob("*.txt")))
    counts = check_index(settings.index_dir)
    assert counts["chunks"] == report.embedded_chunks
    texts: dict[str, str] = {}
    chunker = make_chunker(settings, embedder)  # sizes in the unit the settings name
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        records = list(store.iter_chunks())
        for record in records:
            if record.source not in texts:
                texts[record.source] = loaders.text_of(loaders.load(Path(record.source)))
            assert texts[record.source][record.start : record.end] == record.text
            assert record.n_tokens == chunker.count(record.text) <= chunker.chunk_tokens
            assert embedder.fits(record.text)
    assert len(records) == counts["chunks"]
    assert {Path(s).name for s in texts} == {p.name for p in news_dir.glob("*.txt")}


# -- synthetic documents ----------------------------------------------------------------


def test_synthetic_document_chunks(embedder: Embedder) -> None:
    text, repeated = synthetic_document()
    chunker = Chunker(LIMITS.chunk_tokens, LIMITS.chunk_overlap, fits=embedder.fits)
    chunks = list(chunker.chunks([text]))
    assert_valid_chunks(text, chunks, LIMITS.chunk_tokens, embedder)
    assert text.count(repeated) > 5
    assert assert_duplicates_once(text, chunks) >= 1
    # Apart from repeated copies, every non-space character is in a chunk.
    dups = duplicate_lines(text)
    skip = [(o, o + len(text[o:].split("\n", 1)[0])) for offsets in dups.values() for o in offsets[1:]]
    mask = bytearray(len(text))
    for chunk in chunks:
        mask[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    for start, end in skip:
        mask[start:end] = b"\x01" * (end - start)
    lost = [i for i, ch in enumerate(text) if not mask[i] and not ch.isspace()]
    assert not lost, f"text lost from chunks near {text[lost[0]:lost[0] + 60]!r}"


@pytest.mark.parametrize("chunk_tokens,overlap", [(160, 32), (40, 10), (8, 0)])
def test_limits_hold_for_other_settings(chunk_tokens: int, overlap: int) -> None:
    text, _ = synthetic_document(seed=3, paragraphs=24)
    chunks = list(Chunker(chunk_tokens, overlap).chunks([text]))
    assert_valid_chunks(text, chunks, chunk_tokens)


def test_sentence_longer_than_a_chunk_is_split_at_spaces_with_exact_offsets() -> None:
    rng = random.Random(5)
    text = "Intro line.\n\n" + " ".join(rng.choice(_WORDS) for _ in range(900)) + " Short tail sentence.\n"
    chunks = list(Chunker(160, 32).chunks([text]))
    assert len(chunks) >= 5
    assert_valid_chunks(text, chunks, 160)
    joined = " ".join(c.text for c in chunks)
    assert len(joined.split()) >= 900  # no words lost or glued together


def test_overlap_carries_trailing_sentences_within_the_limit() -> None:
    rng = random.Random(9)
    text = " ".join(_sentence(rng, 3, 8) for _ in range(120)) + "\n"
    chunks = list(Chunker(160, 32).chunks([text]))
    assert len(chunks) >= 4
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end, "consecutive chunks of one paragraph should overlap"
        shared = text[after.start : before.end]
        # A budget, not a hard limit: a word at a chunk start may take one more token than
        # after a space. The hard limit (chunk_tokens) is checked exactly elsewhere.
        assert 0 < count_tokens(shared) <= 32 + 2
        assert after.text.startswith(shared)


def test_streaming_in_any_piece_size_gives_the_same_chunks(tmp_path: Path) -> None:
    rng = random.Random(21)
    # ~300 KB, several 64 KB blocks: paragraphs, soft-wrapped runs with single newlines, CRLF text.
    parts = []
    for i in range(700):
        if i % 3 == 0:
            parts.append(_paragraph(rng, 5, wrap=70) + "\n")
        elif i % 3 == 1:
            parts.append(_paragraph(rng, 4).replace(". ", ".\r\n") + "\r\n\r\n")
        else:
            parts.append(_paragraph(rng, 3) + "\n\n")
    text = "".join(parts)
    assert len(text) > 4 * (1 << 16)
    chunker = Chunker(160, 32)
    whole = list(chunker.chunks([text]))
    assert_valid_chunks(text, whole, 160)
    for size in (1, 7, 4096, 65537, 200_000):
        pieces = (text[i : i + size] for i in range(0, len(text), size))
        assert list(chunker.chunks(pieces)) == whole, f"piece size {size} changed the chunks"
    path = tmp_path / "streamed.txt"
    path.write_bytes(text.encode("utf-8"))
    assert list(chunker.chunks(loaders.load(path).segments)) == whole


def test_chunker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="chunk_tokens"):
        Chunker(4, 0)
    with pytest.raises(ValueError, match="chunk_overlap"):
        Chunker(100, 100)
    assert list(Chunker(100, 10).chunks(["   \n\n  "])) == []


# -- chunk sizes in the embedding model's word pieces (the default) --------------------------


def test_model_piece_chunks_fit_the_model_and_a_short_document_is_one_chunk(embedder: Embedder) -> None:
    chunker = make_chunker(Settings(index_dir=Path("unused"), chunk_tokenizer="model", chunk_tokens=100_000,
                                    chunk_overlap=0), embedder)
    assert chunker.chunk_tokens == embedder.piece_limit == embedder.max_tokens - 2  # [CLS] and [SEP]
    text, _ = synthetic_document()
    chunks = list(chunker.chunks([text]))
    assert len(chunks) > 5
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.n_tokens == embedder.count_pieces(chunk.text) <= embedder.piece_limit
        assert embedder.fits(chunk.text)
    # Most chunks are filled close to the model's limit, not to a fixed cl100k size.
    assert sorted(c.n_tokens for c in chunks)[len(chunks) // 2] > 0.8 * embedder.piece_limit
    short = "Title of a short note\n\nIt has three sentences. Each is short. None needs a second chunk."
    assert len(list(chunker.chunks([short]))) == 1


def test_model_piece_sizes_count_pieces_not_cl100k_tokens(embedder: Embedder) -> None:
    text = " ".join(["Photosynthesis converts electromagnetic radiation."] * 40)
    model = make_chunker(Settings(index_dir=Path("unused"), chunk_tokenizer="model", chunk_tokens=40,
                                  chunk_overlap=0), embedder)
    cl100k = make_chunker(Settings(index_dir=Path("unused"), chunk_tokenizer="cl100k", chunk_tokens=40,
                                   chunk_overlap=0), embedder)
    assert all(embedder.count_pieces(c.text) <= 40 for c in model.chunks([text]))
    assert any(embedder.count_pieces(c.text) > 40 for c in cl100k.chunks([text]))  # the units differ here


def test_unknown_chunk_tokenizer_names_the_setting(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="ASSISTANT_CHUNK_TOKENIZER"):
        make_chunker(Settings(index_dir=Path("unused"), chunk_tokenizer="words"), embedder)
