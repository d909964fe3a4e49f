"""Our sentence splitter (`assistant.text.split_sentences`) against the rules it replaced, pysbd and blingfire.

    .venv/bin/pip install pysbd   # only for this comparison (blingfire is a dependency)
    .venv/bin/python benchmarks/bench_splitter.py [--json OUT] [--examples N]

Ours is blingfire run on each logical line (issue 14: it made 16 boundary errors where the rules
made 38 on the 54 SQuAD boundaries where the two disagreed, and tied on the news corpus); "rules"
is a frozen copy of the regex-and-abbreviation splitter shipped before, kept here to re-measure that.

Measured, never fitted, on two sets of texts: the golden news corpus (../shared/corpus/news/*.txt,
where each golden evidence quote is located in its source file) and the SQuAD contexts of
../shared/qa (each answer span is an exact character range of its context). Per splitter:
- the share of answer spans / evidence quotes that lie inside one sentence (what an answer unit
  or a sentence-aligned chunk can hold whole), with the sentence count and mean length beside it,
  since a splitter that never splits would score 1.0;
- suspect boundaries: a split inside a number ("3." | "5 million"), after a title or Latin
  abbreviation ("Dr." | "Smith", "e.g." | ...), before a number after "No."/"Jan."-style words,
  after a single initial ("John F." | "Kennedy"), or before a lower-case word; and suspect missed
  boundaries (". " + capital after a plain lower-case word of 3+ letters, inside one sentence).
  These are heuristics: counts to compare, with examples to read (--examples);
- boundaries where a library and ours disagree (--examples N prints N of each, to label by hand);
- speed: characters per second over all texts (best of 3), with character offsets, as the product
  needs them (pysbd `char_span=True`, blingfire `text_to_sentences_and_offsets`).
Ours (and the rules) end a sentence at every line break that is not a soft wrap; the libraries join
lines, so each also runs per line ("+lines": every non-blank line split alone), which separates the two questions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bench_common  # noqa: F401  (offline switches, project on sys.path)
from bench_common import SHARED, log

from assistant.text import _lines, split_sentences

Splitter = Callable[[str], list[tuple[int, int]]]
SQUAD = SHARED / "qa" / "squad2-train" / "squad2-train-10-articles.json"
NEWS = SHARED / "corpus" / "news"
GOLDEN = SHARED / "golden" / "news_golden.jsonl"

TITLES = {"mr", "mrs", "ms", "dr", "prof", "rev", "sen", "rep", "gov", "gen", "lt", "col", "capt", "sgt", "st", "jr",
          "sr", "e.g", "i.e", "vs", "cf"}
BEFORE_NUMBERS = {"no", "nos", "fig", "vol", "pp", "p", "ch", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
                  "sept", "oct", "nov", "dec", "art", "sec"}


def _stripped(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    if not piece.strip():
        return None
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + lead + len(piece.strip())


def ours(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in split_sentences(text)]


# The rules shipped before issue 14 (frozen): a sentence ends at . ! ? or ... (plus closing quotes or
# brackets) followed by space and a likely sentence start, unless the dot ends a listed abbreviation
# or a one-letter word; and at every line break that is not a soft wrap.
_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*\s+")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co",
    "no", "fig", "al", "gen", "gov", "sen", "rep", "u.s", "u.k", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx", "dept", "est", "lt", "col", "capt",
    "op", "vol", "pp", "ch", "ed", "cf", "nos", "ca",
}
_OPENERS = "\"'\u201c\u2018([-\u2014\u2013*\u2022"


def _rule_break(body: str, match: re.Match[str]) -> bool:
    dot, cut = match.start(), match.end()
    if body[dot] == ".":
        start = dot
        while start > 0 and (body[start - 1].isalpha() or body[start - 1] == "."):
            start -= 1
        word = body[start:dot].lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    if cut >= len(body):
        return True
    ch = body[cut]
    return ch in _OPENERS or ch.isupper() or ch.isdigit() or not ch.isascii()


def rules(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for line in _lines(text):
        body, cursor = line.text, 0
        for match in _END.finditer(body):
            if _rule_break(body, match):
                end = match.start() + len(match.group().rstrip())
                if span := _stripped(body, cursor, end):
                    out.append((line.start + span[0], line.start + span[1]))
                cursor = match.end()
        if span := _stripped(body, cursor, len(body)):
            out.append((line.start + span[0], line.start + span[1]))
    return out


def make_pysbd() -> Splitter:
    import pysbd

    segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)

    def split(text: str) -> list[tuple[int, int]]:
        return [span for s in segmenter.segment(text) if (span := _stripped(text, s.start, s.end))]

    return split


def make_blingfire() -> Splitter:
    import blingfire

    def split(text: str) -> list[tuple[int, int]]:
        _, offsets = blingfire.text_to_sentences_and_offsets(text)
        return [span for a, b in offsets if (span := _stripped(text, a, b))]

    return split


def per_line(split: Splitter) -> Splitter:
    """`split` run on each non-blank line alone (offsets into the whole text)."""

    def lines(text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for match in re.finditer(r"[^\n]+", text):
            if match.group().strip():
                out.extend((match.start() + a, match.start() + b) for a, b in split(match.group()))
        return out

    return lines


def squad_texts() -> tuple[list[str], list[tuple[int, int, int]]]:
    """The contexts, and (context index, start, end) per answer span of an answerable question."""
    root = json.loads(SQUAD.read_text(encoding="utf-8"))
    contexts: list[str] = []
    spans: list[tuple[int, int, int]] = []
    for article in root["data"]:
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            for qa in paragraph["qas"]:
                for answer in qa.get("answers", []):
                    start = answer["answer_start"]
                    spans.append((len(contexts) - 1, start, start + len(answer["text"])))
    return contexts, spans


def news_texts() -> tuple[list[str], list[tuple[int, int, int]], int]:
    """The news files, (file index, start, end) per golden evidence quote found in its source, quotes not found."""
    files = sorted(NEWS.glob("*.txt"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    names = [f.name for f in files]
    spans: list[tuple[int, int, int]] = []
    missing = 0
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        for quote in item.get("evidence", []):
            pattern = re.compile(r"\s+".join(re.escape(w) for w in quote.split()), re.IGNORECASE)
            where = [(names.index(s), m) for s in item.get("sources", []) if s in names
                     if (m := pattern.search(texts[names.index(s)]))]
            if not where:
                missing += 1
                continue
            doc, match = where[0]
            spans.append((doc, match.start(), match.end()))
    return texts, spans, missing


def _last_word(text: str) -> str:
    match = re.search(r"([A-Za-z][A-Za-z.]*)\.$", text)
    return match.group(1).lower() if match else ""


def suspects(text: str, sentences: list[tuple[int, int]]) -> dict[str, list[str]]:
    """Boundaries (and missed ones) that look wrong, by kind, each with a short example."""
    found: dict[str, list[str]] = {k: [] for k in ("decimal", "abbreviation", "initial", "lowercase_next", "missed")}
    for (a, b), (c, d) in zip(sentences, sentences[1:], strict=False):
        before, after = text[a:b], text[c:d]
        example = f"{before[-30:]!r} | {after[:30]!r}"
        word = _last_word(before)
        if re.search(r"\d\.$", before) and after[:1].isdigit():
            found["decimal"].append(example)
        elif word in TITLES or (word in BEFORE_NUMBERS and after[:1].isdigit()):
            found["abbreviation"].append(example)
        elif re.search(r"(?:^|[\s(])(?:[A-Z]\.)+$", before) and after[:1].isupper():
            found["initial"].append(example)
        elif after[:1].islower():
            found["lowercase_next"].append(example)
    for a, b in sentences:
        for match in re.finditer(r"\b([a-z0-9][a-z0-9'\u2019]{2,})[.!?][\"'\u201d\u2019)]*\s+[\"'\u201c\u2018(]*[A-Z]",
                                 text[a:b]):
            if match.group(1) not in TITLES | BEFORE_NUMBERS:
                found["missed"].append(repr(text[a:b][max(0, match.start() - 25):match.end() + 25]))
    return found


def _boundaries(sentences: list[tuple[int, int]]) -> set[int]:
    return {a for a, _ in sentences[1:]}


def _at(text: str, pos: int) -> str:
    return f"{text[max(0, pos - 35):pos]!r} | {text[pos:pos + 25]!r}"


def measure(name: str, split: Splitter, texts: list[str], spans: list[tuple[int, int, int]],
            reference: list[list[tuple[int, int]]], examples: int) -> tuple[dict[str, object], list[list[tuple[int, int]]]]:
    """The figures for one splitter, and its sentences per text (`reference`: ours, for the disagreements)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        per_text = [split(t) for t in texts]
        best = min(best, time.perf_counter() - started)
    inside = sum(1 for doc, start, end in spans if any(a <= start and end <= b for a, b in per_text[doc]))
    kinds: dict[str, list[str]] = {}
    for text, sentences in zip(texts, per_text, strict=True):
        for kind, hits in suspects(text, sentences).items():
            kinds.setdefault(kind, []).extend(hits)
    only_here: list[str] = []
    only_ours: list[str] = []
    for text, mine, theirs in zip(texts, per_text, reference or per_text, strict=True):
        only_here += [_at(text, p) for p in sorted(_boundaries(mine) - _boundaries(theirs))]
        only_ours += [_at(text, p) for p in sorted(_boundaries(theirs) - _boundaries(mine))]
    count = sum(len(s) for s in per_text)
    chars = sum(len(t) for t in texts)
    shown = {**kinds, "split only here": only_here, "split only by ours": only_ours}
    return {
        "splitter": name,
        "spans": len(spans),
        "inside_one_sentence": round(inside / len(spans), 4) if spans else None,
        "sentences": count,
        "mean_chars": round(sum(b - a for s in per_text for a, b in s) / max(count, 1), 1),
        "suspect": {kind: len(hits) for kind, hits in kinds.items()},
        "suspect_total": sum(len(hits) for hits in kinds.values()),
        "split_only_here": len(only_here),
        "split_only_by_ours": len(only_ours),
        "chars_per_s": round(chars / best),
        "examples": {kind: hits[:examples] for kind, hits in shown.items() if hits} if examples else {},
    }, per_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--examples", type=int, default=0, help="print up to N examples per suspect kind")
    args = parser.parse_args()
    pysbd, blingfire = make_pysbd(), make_blingfire()
    splitters: dict[str, Splitter] = {"ours": ours, "rules": rules, "pysbd": pysbd, "pysbd+lines": per_line(pysbd),
                                      "blingfire": blingfire, "blingfire+lines": per_line(blingfire)}
    squad, squad_spans = squad_texts()
    news, news_spans, missing = news_texts()
    log(f"SQuAD: {len(squad)} contexts, {len(squad_spans)} answer spans; news: {len(news)} files, "
        f"{len(news_spans)} evidence quotes located ({missing} not found verbatim)")
    results: dict[str, list[dict[str, object]]] = {"squad": [], "news": []}
    for corpus, texts, spans in (("squad", squad, squad_spans), ("news", news, news_spans)):
        reference: list[list[tuple[int, int]]] = []
        for name, split in splitters.items():
            row, sentences = measure(name, split, texts, spans, reference, args.examples)
            reference = reference or sentences  # ours comes first
            results[corpus].append(row)
    for corpus, rows in results.items():
        print(f"\n{corpus}: {'splitter':<16} {'inside':>7} {'sentences':>9} {'mean ch':>7} {'suspect':>7} "
              f"{'(decimal/abbrev/initial/lower-next/missed)':<42} {'vs ours +/-':>11} {'chars/s':>11}")
        for r in rows:
            s = r["suspect"]
            assert isinstance(s, dict)
            kinds = f"({s['decimal']}/{s['abbreviation']}/{s['initial']}/{s['lowercase_next']}/{s['missed']})"
            versus = f"+{r['split_only_here']}/-{r['split_only_by_ours']}"
            print(f"  {r['splitter']:<16} {r['inside_one_sentence']:>7} {r['sentences']:>9} {r['mean_chars']:>7} "
                  f"{r['suspect_total']:>7} {kinds:<42} {versus:>11} "
                  f"{r['chars_per_s']:>11,}")
            for kind, hits in dict(r["examples"]).items():  # type: ignore[call-overload]
                for hit in hits:
                    print(f"      {kind}: {hit}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
