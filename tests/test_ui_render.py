"""The chat UI's HTML (ui/render.py): untrusted text stays text, citations link to their quotes."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

import pytest

from assistant.ui import render

TRAPS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click](javascript:window.__xss=1)",
    "![x](javascript:alert(1))",
    "$$\\href{javascript:alert(1)}{x}$$",
    "${window.__xss=1} {{constructor.constructor('x')()}} `code` <b>bold</b> &amp; &lt;",
    '"><svg onload=alert(1)>',
]
# Everything render.py itself writes; anything else in the output came from the data.
OWN_TAGS = {"div", "span", "a", "details", "summary", "mark", "q", "p", "table", "thead", "tbody", "tr", "th",
            "td", "h2", "b", "ul", "li"}
OWN_ATTRS = {"class", "id", "href", "title", "role", "aria-hidden", "aria-label", "open"}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(markup: str) -> _Collect:
    parser = _Collect()
    parser.feed(markup)
    parser.close()
    return parser


def _assert_inert(markup: str) -> str:
    """Only render.py's own tags and attributes; links only to in-page citations. Returns the text."""
    parsed = _parse(markup)
    for tag, attrs in parsed.tags:
        assert tag in OWN_TAGS, f"unexpected tag <{tag}> in {markup[:200]}"
        for name, value in attrs.items():
            assert name in OWN_ATTRS, f"unexpected attribute {name}= on <{tag}>"
            if name == "href":
                assert (value or "").startswith("#da-cite-"), value
    for raw in ("<script", "<img", "<svg", "<b>bold", "](", "${", "{{", "$$", "`"):  # pieces of TRAPS
        assert raw not in markup, f"{raw!r} left raw in the markup"
    return "".join(parsed.text)


def _result(**extra: Any) -> dict[str, Any]:
    text = "Intro sentence. The codename is Quartzfinch <img src=x onerror=\"window.__xss=1\"> today. Tail [x](javascript:x)."
    start = text.index("The codename")
    end = text.index("today.") + len("today.")
    quote = text[start:end]
    result: dict[str, Any] = {
        "question": "What is the codename?",
        "standalone_question": "What is the codename?",
        "answer": f"{quote} [1]",
        "abstained": False,
        "confidence": 0.61,
        "citations": [{"n": 1, "chunk_id": 7, "doc_id": "d1", "title": "Memo <script>window.__xss=1</script>",
                       "source": "/srv/uploads/memo_<b>.txt", "start": 100 + start, "end": 100 + end, "quote": quote}],
        "passages": [{"chunk_id": 7, "doc_id": "d1", "title": "Memo <script>window.__xss=1</script>",
                      "source": "/srv/uploads/memo_<b>.txt", "start": 100, "end": 100 + len(text), "text": text,
                      "score": 0.03},
                     {"chunk_id": 9, "doc_id": "d2", "title": "[t](javascript:x)", "source": "b.txt", "start": 0,
                      "end": 20, "text": "Other `passage` $$x$$", "score": 0.02}],
        "timings": {"total_ms": 42.0},
    }
    result.update(extra)
    return result


@pytest.mark.parametrize("trap", TRAPS)
def test_esc_round_trips_and_leaves_nothing_active(trap: str) -> None:
    out = render.esc(trap)
    assert html.unescape(out) == trap
    assert not set(out) & set("<>\"'[]()$`{}")
    _assert_inert(f"<div>{out}</div>")


def test_answer_links_citations_and_marks_the_quote() -> None:
    result = _result()
    markup = render.render_answer(3, result)
    text = _assert_inert(markup)
    parsed = _parse(markup)
    links = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert links == [{"class": "da-cite", "href": "#da-cite-3-1", "title": "Show source 1", "aria-label": "Show source 1"}]
    details = [attrs for tag, attrs in parsed.tags if tag == "details"]
    assert details == [{"class": "da-source", "id": "da-cite-3-1"}]  # collapsed until clicked
    assert '<mark class="da-quote">' + render.esc(result["citations"][0]["quote"]) + "</mark>" in markup
    assert "Intro sentence." in text and "Tail [x](javascript:x)." in text  # the passage around the quote
    assert "Memo <script>window.__xss=1</script>" in text
    assert "memo_<b>.txt" in text and "/srv/uploads" not in text  # the file name, not the server's folders
    assert "answered by extractive" in " ".join(text.split())


def test_unknown_citation_numbers_stay_text_and_backend_is_shown() -> None:
    result = _result(answer="First [1] and a literal [2] from the document.", backend="llm-local")
    markup = render.render_answer(0, result)
    text = _assert_inert(markup)
    assert markup.count('class="da-cite"') == 1
    assert "a literal [2] from" in text
    assert "answered by llm-local" in " ".join(text.split())


def test_llm_problems_are_shown_and_unverified_sentences_are_marked() -> None:
    answer = "Supported part [1]. Made-up <b>claim</b> [unverified]. End [1]."
    start = answer.index("Made-up")
    end = answer.index("[unverified].") + len("[unverified].")
    result = _result(answer=answer, backend="openai", unsupported=[{"start": start, "end": end, "text": answer[start:end]}],
                     warnings=["openai backend: timeout: no answer within 1 s <script>"])
    markup = render.render_answer(2, result)
    text = _assert_inert(markup)
    assert "openai backend: timeout: no answer within 1 s <script>" in text
    parsed = _parse(markup)
    assert ("span", {"class": "da-unverified", "title": "Not supported by the passage it cites"}) in parsed.tags
    marked = markup.split('<span class="da-unverified"', 1)[1].split("</span>", 1)[0]
    assert "Made-up" in marked and "Supported part" not in marked
    assert markup.count('class="da-cite"') == 2  # both [1] links survive around the marked sentence
    fallback = render.render_answer(3, _result(fallback_reason="local backend: cannot load model.gguf"))
    assert "local backend: cannot load model.gguf" in _assert_inert(fallback)
    assert 'class="da-warn"' not in render.render_answer(4, _result())


def test_follow_up_shows_how_it_was_read() -> None:
    result = _result(question="And then?", standalone_question="And then? (context: What is the codename?)")
    text = _assert_inert(render.render_answer(1, result))
    assert "read as: And then? (context: What is the codename?)" in text


def test_abstention_is_a_notice_not_an_answer() -> None:
    result = _result(answer="I could not find an answer to that in the indexed documents.", abstained=True,
                     citations=[])
    markup = render.render_answer(0, result)
    text = _assert_inert(markup)
    assert 'class="da-msg da-abstain"' in markup and "da-answer" not in markup and "da-cite" not in markup
    assert "No answer in your documents" in text


def test_quote_context_falls_back_to_the_index_then_to_the_quote() -> None:
    result = _result()
    citation = result["citations"][0]
    before, quote, after = render.quote_context(citation, result["passages"])
    assert quote == citation["quote"] and before == "Intro sentence. " and after.startswith(" Tail")

    document = "x" * 100 + result["passages"][0]["text"]
    calls: list[tuple[str, int, int]] = []

    def document_text(doc_id: str, start: int, end: int) -> str:
        calls.append((doc_id, start, end))
        return document[start:end]

    before, quote, after = render.quote_context(citation, [], document_text)
    assert quote == citation["quote"] and before.endswith("Intro sentence. ") and after.startswith(" Tail")
    assert calls and calls[0][0] == "d1"
    assert render.quote_context(citation, [], lambda *_: None) == ("", citation["quote"], "")
    moved = [{**result["passages"][0], "text": "something else entirely"}]  # the span no longer matches
    assert render.quote_context(citation, moved) == ("", citation["quote"], "")


def test_streaming_error_question_and_sources_panel_are_escaped() -> None:
    for markup in (render.render_streaming(TRAPS[1] + " [1]"), render.render_error(TRAPS[0]),
                   render.render_question(TRAPS[2]), render.render_sources_panel(2, _result()),
                   render.render_sources_panel(None, None), render.render_notice(TRAPS[1], "bad")):
        _assert_inert(markup)
    panel = render.render_sources_panel(2, _result())
    parsed = _parse(panel)
    ids = [attrs.get("id") for tag, attrs in parsed.tags if tag == "details"]
    assert ids == ["da-src-2-7", "da-src-2-9"]  # the cited passage first
    assert panel.count("<mark") == 1


def test_documents_list_stats_and_upload_report_are_escaped() -> None:
    docs = [{"id": "abc<1>", "title": TRAPS[0], "source": "/x/" + TRAPS[1].replace("/", "_") + ".txt",
             "n_chunks": 3, "size": 2048, "updated_at": 1_700_000_000.0}]
    text = _assert_inert(render.render_documents(docs))
    assert TRAPS[0] in text and "2.0 KB" in text and "abc<1>" in text
    _assert_inert(render.render_documents([]))
    stats = _assert_inert(render.render_docs_heading({"documents": 1, "chunks": 3, "model": TRAPS[1], "dim": 384}))
    assert "1 document" in stats and "3 chunks" in stats and TRAPS[1] in stats
    rows = [{"file": TRAPS[0] + ".txt", "status": "added", "chunks": 2},
            {"file": "x.exe", "status": "refused", "reason": "x.exe: unsupported file type; upload .txt"}]
    report = render.render_ingest_rows(rows, 0.5)
    text = _assert_inert(report)
    assert "1 of 2 files indexed, 1 not indexed" in text and "unsupported file type" in text
    assert 'class="da-status-bad"' in report


def test_example_questions_come_from_titles() -> None:
    titles = ["Quarterly Report 2024", "<img src=x onerror=alert(1)>", "ok", "Quarterly Report 2024",
              "A very long title that keeps going and going well past the seventy character limit for questions",
              "Third"]
    questions = render.example_questions(titles, limit=3)
    assert questions[0] == "What is \u201cQuarterly Report 2024\u201d about?"
    assert questions[1].startswith("What is \u201cA very long title") and "\u2026\u201d" in questions[1]
    assert all("<" not in q for q in questions)
    assert questions[-1] == render.GENERIC_EXAMPLES[0]
    assert render.example_questions([]) == list(render.GENERIC_EXAMPLES)
