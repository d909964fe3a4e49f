"""Answer units: Markdown structure (headings, list items, table rows, code), exact spans, HTML."""

from __future__ import annotations

import random
import re
from pathlib import Path

from assistant import loaders
from assistant.text import split_sentences
from assistant.units import KINDS, Unit, split_units

ROOT = Path(__file__).resolve().parents[1]


def units_of(doc: str, offset: int = 0) -> list[Unit]:
    units = list(split_units(doc, offset))
    for u in units:
        assert doc[u.start - offset : u.end - offset] == u.text, u
        assert u.kind in KINDS
    return units


def by_kind(units: list[Unit], kind: str) -> list[Unit]:
    return [u for u in units if u.kind == kind]


DOC = """# Harbour guide

The harbour opens at **6 am**. Boats pay a `mooring` fee.

## Fees

Fees are listed below:

- Small boats pay *10 euros* a night, see [the tariff](https://example.com/t(1)).
- Large boats pay 25 euros
  a night, and more in summer.
1. First step
2) Second step

| Boat | Fee | Notes |
|:-----|----:|-------|
| Small | **10** | [per night](x.html) |
| Large | 25 | |

```python
# not a heading
- not an item
| not | a row |
```

> Quoted *words* here.

Setext title
============

Closing sentence.
"""


def test_markdown_structure_kinds_spans_display_and_context() -> None:
    units = units_of(DOC, 1000)
    kinds = [u.kind for u in units]
    assert kinds == ["heading", "sentence", "sentence", "heading", "sentence", "list_item", "list_item", "list_item",
                     "list_item", "table_row", "table_row", "sentence", "heading", "sentence"]
    h1, s1, s2, h2, lead, i1, i2, i3, i4, r1, r2, quote, setext, last = units
    assert (h1.text, h1.display, h1.context) == ("# Harbour guide", "Harbour guide", "")
    assert (h1.start, h1.end) == (1000, 1000 + len("# Harbour guide"))
    assert s1.shown() == "The harbour opens at 6 am." and s1.context == "Harbour guide"
    assert s2.text == "Boats pay a `mooring` fee." and s2.shown() == "Boats pay a mooring fee."
    assert (h2.display, h2.context) == ("Fees", "Harbour guide")  # a heading's context: the enclosing heading
    assert lead.text == "Fees are listed below:" and lead.context == "Fees"  # no ':' join into a list
    assert i1.text.startswith("- Small") and i1.text.endswith("(https://example.com/t(1)).")
    assert i1.shown() == "Small boats pay 10 euros a night, see the tariff."
    assert i2.text == "- Large boats pay 25 euros\n  a night, and more in summer."  # with its continuation
    assert i2.shown() == "Large boats pay 25 euros a night, and more in summer."
    assert (i3.shown(), i4.shown()) == ("First step", "Second step")
    assert all(u.context == "Fees" for u in (i1, i2, i3, i4))
    assert r1.text == "| Small | **10** | [per night](x.html) |"
    assert r1.shown() == "Boat: Small; Fee: 10; Notes: per night"
    assert r1.context == "Boat | Fee | Notes"
    assert r2.shown() == "Boat: Large; Fee: 25"  # empty cells left out
    assert not any("not a" in u.text for u in units)  # fenced code gives no units
    assert quote.text == "> Quoted *words* here." and quote.shown() == "Quoted words here."
    assert (setext.text, setext.display) == ("Setext title", "Setext title")  # the underline is not in the span
    assert last.context == "Setext title"


def test_table_header_and_separator_are_not_units_and_mid_table_chunks() -> None:
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    units = units_of(table)
    assert [(u.kind, u.text, u.display, u.context) for u in units] == [("table_row", "| 1 | 2 |", "a: 1; b: 2", "a | b")]
    # A chunk that starts at the separator or at a body row: the header is in an earlier chunk.
    for start in (table.index("|---"), table.index("| 1")):
        chunk = table[start:]
        rows = units_of(chunk, start)
        assert [(u.text, u.display, u.context) for u in rows] == [("| 1 | 2 |", "1; 2", "")]
    # Pipe-less GFM rows and escaped pipes.
    units = units_of("Name | Value\n--- | ---\nx\\|y | 3\n")
    assert [(u.kind, u.display) for u in units] == [("table_row", "Name: x|y; Value: 3")]


def test_list_items_long_split_task_boxes_and_nesting() -> None:
    doc = ("* Short item.\n"
           "  * Nested item\n"
           "+ [x] Done task\n"
           "- One sentence here. Two sentences here. Three sentences here.\n")
    units = units_of(doc)
    assert [u.kind for u in units] == ["list_item"] * 6
    assert [u.shown() for u in units[:3]] == ["Short item.", "Nested item", "Done task"]
    long = units[3:]
    assert long[0].text == "- One sentence here."  # the first piece starts at the bullet
    assert [u.shown() for u in long] == ["One sentence here.", "Two sentences here.", "Three sentences here."]
    assert not by_kind(units_of("2024. The year began.\n"), "list_item")  # a year is not a list number


def test_code_blocks_breaks_and_a_chunk_that_starts_inside_code() -> None:
    doc = "Intro:\n\n```\ncode line\n```\n\n---\n\n~~~\ntilde code\n~~~\nAfter.\n"
    units = units_of(doc)
    assert [u.text for u in units] == ["Intro:", "After."]  # ':' does not join across skipped code
    inside = "x = 1\n```\n\nReal text here.\n\n```python\ny = 2\n```\n"
    assert [u.text for u in units_of(inside)] == ["Real text here."]
    unclosed = "Before it.\n\n```\nnever closed\n"
    assert [u.text for u in units_of(unclosed)] == ["Before it."]
    assert [u.text for u in units_of("Use ```code``` inline.")] == ["Use ```code``` inline."]
    # Only bare fences: the reading that leaves more prose-like lines outside code wins.
    diagram = "a \u2500\u25ba b   (c, d,\n  (e)    f\n```\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\nA sentence.\n"
    assert [u.shown() for u in units_of(diagram, 70)] == ["x: 1; y: 2", "A sentence."]


def _old_split(text: str, offset: int = 0) -> list[tuple[int, int, str]]:
    """split_units before Markdown structure (the plain-text behaviour that must not change)."""
    sentences = split_sentences(text, offset)
    out = []
    i = 0
    while i < len(sentences):
        start, end = sentences[i].start, sentences[i].end
        if sentences[i].text.rstrip().endswith(":") and i + 1 < len(sentences):
            end = sentences[i + 1].end
            i += 1
        out.append((start, end, text[start - offset : end - offset]))
        i += 1
    return out


WORDS = ("harbour", "ferry", "The", "council", "Vessa", "approved", "budget", "in", "May", "of", "3", "2024",
         "Dr.", "e.g.", "said", "\u201cYes\u201d", "caf\u00e9", "(early)", "a", "new", "pier")


def _prose(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 12)):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
        if words[0].isdigit():
            words = "In " + words  # a line starting "3. " is a numbered list item, also in a .txt file
        parts.append(words[0].upper() + words[1:] + rng.choice([".", ".", "?", "!", ":", "", ";"]))
        parts.append(rng.choice([" ", " ", "\n", "\n\n", "\r\n", "  \n"]))
    return "".join(parts)


def test_plain_text_splits_as_before() -> None:
    rng = random.Random(11)
    for _ in range(300):
        text = _prose(rng)
        offset = rng.randint(0, 5000)
        units = units_of(text, offset)
        assert [(u.start, u.end, u.text) for u in units] == _old_split(text, offset)
        assert all(u.kind == "sentence" and u.context == "" and u.display == "" for u in units)


BLOCKS = (
    "# Heading {w}", "### Deep *heading* {w} ###", "Title {w}\n===", "Sub {w}\n---", "- item {w}",
    "* item **{w}**\n  continued {w}", "1. first {w}", "10) tenth {w}", "| {w} | b |\n|---|---|\n| 1 | `{w}` |",
    "| row {w} | x |", "```\n# code {w}\n```", "```py\n- code\n", "~~~\n| t |\n~~~", "> quote {w}.", "***",
    "Plain {w}. Sentence two: {w}", "[link {w}](http://x.y/{w}) and ![img]({w}.png)", "  indented {w} | pipe",
    "\\*escaped\\* {w}", "- [ ] task {w}", "  - nested {w}", "", "\r", "|---|", "#", "-", "| |",
)


def _markdownish(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 14)):
        out.append(rng.choice(BLOCKS).format(w=rng.choice(WORDS)))
        out.append(rng.choice(["\n", "\n\n", "\r\n", "\n   \n"]))
    return "".join(out)


def test_random_markdown_spans_are_exact_ordered_and_skip_code() -> None:
    rng = random.Random(5)
    for _ in range(800):
        doc = _markdownish(rng)
        cut = rng.randint(0, len(doc))  # a chunk may start anywhere (a real one: at a sentence start)
        for text, offset in ((doc, 0), (doc[cut:], cut)):
            units = units_of(text, offset)
            last = offset
            for u in units:
                assert u.start >= last and u.end > u.start, (text, units)
                assert u.text == u.text.strip() and u.shown()
                last = u.end
                if offset:
                    continue  # a cut mid-line or mid-word ("ry**", "-|") leaves stray markup
                assert not re.fullmatch(r"\|?( *:?-+:? *\|)+ *(:?-+:?)? *|(`{3,}|~{3,})\w*", u.text)  # no separator, fence
                assert not re.search(r"\*\*\w|\\\*", u.shown()), u
                if u.kind == "list_item":
                    assert not re.match(r"[-*+] |\d+[.)] ", u.shown())


def test_speed_of_a_typical_chunk() -> None:
    import time

    doc = (ROOT / "README.md").read_text(encoding="utf-8")
    pieces = [doc[i : i + 900] + f" {i}" for i in range(0, len(doc) - 900, 50)]  # distinct: no cache hits
    started = time.perf_counter()
    for i, piece in enumerate(pieces):
        split_units(piece, i)
    per_chunk = (time.perf_counter() - started) / len(pieces)
    assert per_chunk < 0.005, f"{per_chunk * 1000:.2f} ms a chunk"


# -- the built-in demo documents -----------------------------------------------------------


def test_project_docs_split_sensibly() -> None:
    arch = units_of((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    rows = by_kind(arch, "table_row")
    assert len(rows) >= 20 and all(r.context == "part | where | job" for r in rows)
    settings = next(r for r in rows if r.text.startswith("| settings"))
    assert settings.display.startswith("part: settings; where: assistant/settings.py; job: every knob")
    assert not any(u.text.startswith(("|---", "file \u2500", "```")) for u in arch)  # diagram is code: skipped
    readme = units_of((ROOT / "README.md").read_text(encoding="utf-8"))
    row = next(u for u in readme if u.kind == "table_row" and "CHUNK_TOKENS" in u.text)
    assert row.shown() == "setting: CHUNK_TOKENS; default: 160; meaning: the chunk size, in cl100k tokens"
    assert row.context == "setting | default | meaning"
    assert not any(u.shown().startswith(("make run", ".venv/bin/assistant ingest")) for u in readme)
    assert {u.display for u in by_kind(readme, "heading")} >= {"doc-assistant", "Use", "Development"}
    for path in sorted((ROOT / "docs").glob("*.md")):
        units = units_of(path.read_text(encoding="utf-8"))
        assert units and units[0].kind == "heading"
        assert all(u.shown() for u in units)


# -- HTML loader: structure as Markdown-like text -------------------------------------------


def test_html_loader_keeps_structure_as_markdown(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Tides</title><script>var x = '<h1>no</h1>';</script></head><body>"
        "<h1>High  water</h1><p>High water at <b>Vessa</b> is at 06:12.</p><p>Low water follows.</p>"
        "<h2>Ports &amp; times</h2><ul><li>First <em>item</em></li><li><p>Second</p><ol><li>nested</li></ol></li></ul>"
        "<table><tr><th>Port</th><th>Time</th></tr><tr><td>Vessa</td><td>06:12</td></tr>"
        "<tr><td>A|B</td><td>&lt;script&gt;</td></tr></table>"
        "<pre>x = 1\n  y = 2</pre><p>After<br>the break</p></body></html>",
        encoding="utf-8",
    )
    doc = loaders.load(path)
    text = loaders.text_of(doc)
    assert doc.title == "Tides"
    assert text == (
        "# High water\n\nHigh water at Vessa is at 06:12.\nLow water follows.\n\n## Ports & times\n\n"
        "- First item\n- Second\n  1. nested\n\n| Port | Time |\n|---|---|\n| Vessa | 06:12 |\n"
        "| A\\|B | <script> |\n\n```\nx = 1\n  y = 2\n```\n\nAfter\nthe break"
    )
    units = units_of(text)
    assert [u.kind for u in units] == ["heading", "sentence", "sentence", "heading", "list_item", "list_item",
                                       "list_item", "table_row", "table_row", "sentence"]
    assert units[4].context == "Ports & times"
    assert [u.display for u in by_kind(units, "table_row")] == ["Port: Vessa; Time: 06:12", "Port: A|B; Time: <script>"]


def test_html_deep_nesting_and_title_fallback(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text("<body>" + "<div>" * 5000 + "<h1>Deep title</h1><p>Deep text.</p>" + "</div>" * 5000 + "</body>")
    doc = loaders.load(path)
    assert doc.title == "Deep title"
    assert loaders.text_of(doc) == "# Deep title\n\nDeep text."


# -- the sentence splitter: exact offsets on odd and real text ---------------------------------

SHARED = ROOT.parent / "shared"


def _assert_exact_sentences(text: str, offset: int = 0) -> list[str]:
    """Every sentence is its exact slice, stripped, in order; no visible character is lost."""
    sentences = split_sentences(text, offset)
    covered = 0
    for s in sentences:
        assert text[s.start - offset : s.end - offset] == s.text and s.text == s.text.strip() and s.text
        assert s.start - offset >= covered
        assert not text[covered : s.start - offset].strip(), (text[covered : s.start - offset], s)
        covered = s.end - offset
    assert not text[covered:].strip()
    return [s.text for s in sentences]


def test_sentences_end_at_marks_not_at_initials_and_at_line_breaks() -> None:
    text = ("He was born in the 1980s. The family moved.\nJ.S. Bach wrote it in Leipzig. Apple Inc. "
            "The firm grew.\nA headline\nA line that wraps\nonto the next. Done!")
    assert _assert_exact_sentences(text, 40) == [
        "He was born in the 1980s.", "The family moved.", "J.S. Bach wrote it in Leipzig.", "Apple Inc.",
        "The firm grew.", "A headline", "A line that wraps\nonto the next.", "Done!"]


def test_sentences_of_odd_text_keep_exact_offsets() -> None:
    for text in ("", "  \n\n \r\n", "a\x00b. C d.", "Tab\there.  Two  spaces. X\r\nNext.", "x\u2028y. Z.",
                 "Emoji \U0001f600 here. Next \U0001f468\u200d\U0001f469 one. E\u0301te\u0301.", "word " * 3000,
                 "\ufeffStart. \u00a0Next.", "No end mark", "...", "?! ?"):
        _assert_exact_sentences(text)
        _assert_exact_sentences(text, 7)


def test_sentences_of_the_news_corpus_and_squad_contexts_are_exact(news_dir: Path) -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted(news_dir.glob("*.txt"))]
    squad = SHARED / "qa" / "squad2-train" / "squad2-train-10-articles.json"
    if squad.is_file():
        import json

        data = json.loads(squad.read_text(encoding="utf-8"))["data"]
        texts += [p["context"] for article in data for p in article["paragraphs"]]
    assert len(texts) > 2
    for text in texts:
        _assert_exact_sentences(text)
