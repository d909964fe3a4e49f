"""The chat UI end to end: a real server on loopback, real model and index, real headless Chromium.

One server and one browser per module; each test opens its own page. Needs ../shared (the news
corpus) and /usr/bin/chromium; skips without them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import shared_path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
SCREENSHOTS = Path("/tmp/ui-screenshots")
QUESTION = "What did Zelensky say about the 90% figure?"
TIMEOUT = 30_000  # ms, for anything that waits on the server

FACT_DOC = ("Harbor Lighthouse Notes\n\n"
            "The Marrowpoint lighthouse was repainted in teal and coral during the spring of 2019.\n"
            "Its keeper, Ottoline Brask, logged 412 ships passing in the first week after the repainting.\n")
XSS_DOC = ("Zebulon memo <script>window.__xss=1</script>\n\n"
           "The Zebulon project codename is Quartzfinch <img src=x onerror=\"window.__xss=1\"> and it launched in 2031.\n"
           "Read [the Zebulon launch details](javascript:window.__xss=1) before the Zebulon review meeting.\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_app(service: Any, port: int) -> Any:
    """The app the way production builds it: `assistant.web.app.create_app` (UI mounted at /ui) when
    it exists, else the UI mounted on a bare FastAPI app."""
    try:
        from assistant.web.app import create_app
        from assistant.web.config import ServerConfig
    except ImportError:
        import gradio as gr
        from fastapi import FastAPI

        from assistant.ui import build_ui

        return gr.mount_gradio_app(FastAPI(), build_ui(service), path="/ui")
    return create_app(service, ServerConfig(host="127.0.0.1", port=port))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[SimpleNamespace]:
    news = shared_path("corpus", "news")
    import uvicorn

    from assistant.service import AssistantService
    from assistant.settings import Settings

    tmp = tmp_path_factory.mktemp("ui")
    settings = Settings(index_dir=tmp / "index")
    service = AssistantService(settings, embedder=embedder)
    report = service.ingestor.ingest_paths([news], progress=False)
    assert not report.failed, report.summary()
    service.warm_up()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_make_app(service, port), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on", timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, name="ui-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the UI server did not start")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    yield SimpleNamespace(base=base, ui=base + "/ui/", service=service, tmp=tmp)
    # gradio_client's heartbeat stream outlives Client.close(): uvicorn cancels it after
    # timeout_graceful_shutdown and would log that cancellation as an error.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    server.should_exit = True
    thread.join(timeout=15)
    service.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, served: SimpleNamespace) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served.ui, wait_until="domcontentloaded")
    page.locator("#da-question textarea").wait_for()
    page.wait_for_function("window.__daCiteHandler === true")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _ask(page: Any, question: str) -> Any:
    """Type a question, press Ask, wait for the finished answer; returns the last assistant message."""
    answers = page.locator("#da-chat .da-msg:not(.da-streaming)")
    before = answers.count()
    page.locator("#da-question textarea").fill(question)
    page.locator("#da-ask").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#da-chat .da-msg:not(.da-streaming)').length > n", arg=before)
    return answers.last


def _upload(page: Any, files: list[Path]) -> Any:
    page.get_by_role("tab", name="Documents").click()
    page.locator("#da-upload input[type=file]").set_input_files([str(f) for f in files])
    for f in files:  # uploaded to the server once the component links the stored file
        page.locator(f'#da-upload a[download="{f.name}"]').wait_for()
    page.locator("#da-ingest").click()
    report = page.locator("#da-ingest-report")
    report.wait_for()
    return report


def _screenshot(page: Any, tmp: Path, name: str) -> Path:
    path = tmp / name
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    print(f"screenshot: {path} (copy: {SCREENSHOTS / name})")
    return path


def test_answer_streams_and_citation_opens_the_highlighted_quote(page: Any, served: SimpleNamespace) -> None:
    expected = served.service.ask(QUESTION)
    assert not expected.abstained and expected.citations
    # Record what the assistant message looks like while it streams.
    page.evaluate("""() => {
        window.__streamed = [];
        new MutationObserver(() => {
            document.querySelectorAll('#da-chat .da-streaming .da-text').forEach(el => {
                const t = el.textContent.replace('\\u258c', '').trim();
                if (t && window.__streamed[window.__streamed.length - 1] !== t) window.__streamed.push(t);
            });
        }).observe(document.body, {childList: true, subtree: true, characterData: true});
    }""")
    answer = _ask(page, QUESTION)
    streamed = page.evaluate("window.__streamed")
    assert streamed, "no partial answer was shown while streaming"
    assert len(streamed[0]) < len(expected.answer)
    assert "[1]" in answer.locator(".da-text").inner_text()
    assert answer.locator(".da-backend").inner_text() == "extractive"

    cite = answer.locator("a.da-cite").first
    assert cite.inner_text() == "[1]"
    mark = page.locator("#da-cite-0-1 mark")
    assert not mark.is_visible()  # collapsed until the citation is clicked
    cite.click()
    mark.wait_for(state="visible")
    quote = expected.citations[0].quote
    assert "90" in mark.inner_text()
    assert " ".join(mark.inner_text().split()) == " ".join(quote.split())
    source = page.locator("#da-cite-0-1")
    assert expected.citations[0].title in source.locator("summary").inner_text()
    assert Path(expected.citations[0].source).name in source.inner_text()
    # The sources panel lists the passages used, the cited one with its quote marked.
    panel = page.locator("#da-sources-panel")
    assert "90 per cent" in panel.locator("details.da-cited mark").first.inner_text()
    assert panel.locator("details.da-source").count() == len(expected.passages)
    _screenshot(page, served.tmp, "chat_citation.png")

    # A follow-up carries the earlier question as history.
    follow = _ask(page, "And how did Trump respond to that?")
    assert "Zelensky" in follow.locator(".da-readas").inner_text()


def test_abstention_looks_different(page: Any) -> None:
    notice = _ask(page, "What is the boiling point of liquid nitrogen on Neptune's moons?")
    assert "da-abstain" in (notice.get_attribute("class") or "")
    assert notice.locator(".da-notice-title").inner_text().startswith(("\u26a0", "No answer"))
    assert notice.locator("a.da-cite").count() == 0


def test_upload_then_ask_cites_the_new_document(page: Any, served: SimpleNamespace) -> None:
    doc = served.tmp / "marrowpoint_lighthouse.txt"
    doc.write_text(FACT_DOC)
    bad = served.tmp / "notes.exe"
    bad.write_bytes(b"MZ\x00\x00")
    report = _upload(page, [doc, bad])
    ok_row = report.locator("tr", has_text=doc.name)
    assert ok_row.locator(".da-badge").inner_text() == "added"
    bad_row = report.locator("tr", has_text=bad.name)
    assert bad_row.locator(".da-badge").inner_text() == "refused"
    assert "unsupported file type" in bad_row.locator(".da-reason").inner_text()
    listing = page.locator("#da-documents-list")
    listing.get_by_text(doc.name).wait_for()
    assert "3 documents" in page.locator("#da-doc-stats").inner_text()

    page.get_by_role("tab", name="Chat").click()
    answer = _ask(page, "How many ships did the Marrowpoint lighthouse keeper log?")
    assert "412" in answer.locator(".da-text").inner_text()
    answer.locator("a.da-cite").first.click()
    source = answer.locator("details.da-source[open]").first
    assert doc.name in source.locator(".da-file").inner_text()
    assert "412" in source.locator("mark").inner_text()

    # Remove it again: select it, press Remove; it leaves the list and the index.
    page.get_by_role("tab", name="Documents").click()
    page.locator("#da-remove-choice input").click()
    page.get_by_role("option", name="Harbor Lighthouse Notes", exact=False).click()
    page.locator("#da-remove").click()
    page.locator("#da-remove-note").get_by_text("Removed \u201cHarbor Lighthouse Notes\u201d.").wait_for()
    listing.get_by_text(doc.name).wait_for(state="detached")
    assert "2 documents" in page.locator("#da-doc-stats").inner_text()
    assert all(d.title != "Harbor Lighthouse Notes" for d in served.service.documents())


def test_untrusted_document_text_stays_inert(page: Any, served: SimpleNamespace) -> None:
    evil = served.tmp / "zebulon_memo.txt"
    evil.write_text(XSS_DOC)
    report = _upload(page, [evil])
    assert report.locator("tr", has_text=evil.name).locator(".da-badge").inner_text() == "added"
    listing = page.locator("#da-documents-list")
    listing.get_by_text("Zebulon memo <script>window.__xss=1</script>", exact=True).wait_for()
    # The document is selectable for removal under its literal title.
    page.locator("#da-remove-choice input").click()
    option = page.get_by_role("option", name="Zebulon memo <script>window.__xss=1</script>", exact=False)
    option.wait_for()
    page.keyboard.press("Escape")
    option.wait_for(state="hidden")
    _screenshot(page, served.tmp, "documents_tab.png")

    page.get_by_role("tab", name="Chat").click()
    answer = _ask(page, "What is the Zebulon project codename?")
    assert "Quartzfinch" in answer.inner_text()
    answer.locator("a.da-cite").first.click()
    answer.locator("details.da-source[open] mark").first.wait_for(state="visible")
    # Every trap shows as text, in the answer, the citation preview and the sources panel...
    assert '<img src=x onerror="window.__xss=1">' in answer.locator(".da-text").inner_text()
    assert "<script>window.__xss=1</script>" in answer.locator("details.da-source summary").first.inner_text()
    page.locator("#da-sources-panel").get_by_text("[the Zebulon launch details](javascript:window.__xss=1)",
                                                  exact=False).first.wait_for()
    assert page.get_by_text("<script>", exact=False).first.is_visible()
    _screenshot(page, served.tmp, "untrusted_document.png")
    # ...and nothing became live markup or ran.
    assert page.locator("#da-chat img[src='x'], #da-sources-panel img, #da-documents-list img").count() == 0
    assert page.locator("a[href^='javascript:' i]").count() == 0
    assert page.locator("#da-chat script, #da-sources-panel script, #da-documents-list script").count() == 0
    page.get_by_role("tab", name="Documents").click()
    page.locator("#da-documents-list").get_by_text("Zebulon memo <script>", exact=False).wait_for()
    time.sleep(0.3)  # a broken image's onerror would have fired by now
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("window.__xss") is None


def test_thumbs_down_with_comment_is_stored(page: Any, served: SimpleNamespace) -> None:
    answer = _ask(page, QUESTION)
    page.locator("#da-comment textarea, #da-comment input").first.fill("cites the right passage but too long")
    page.locator("#da-chat button[aria-label='Dislike']").last.click()
    page.locator("#da-feedback-note").get_by_text("thumbs down").wait_for()
    assert answer.is_visible()
    rows = [item for item in served.service.feedback.items() if item.comment == "cites the right passage but too long"]
    assert len(rows) == 1
    row = rows[0]
    assert row.rating == -1 and row.question == QUESTION and not row.abstained
    assert "90 per cent" in row.answer and row.citations and "90" in row.citations[0]["quote"]
    with sqlite3.connect(served.service.feedback.path) as db:  # really on disk
        assert db.execute("SELECT COUNT(*) FROM feedback WHERE rating = -1 AND comment = ?",
                          (row.comment,)).fetchone()[0] == 1
    assert page.locator("#da-comment textarea, #da-comment input").first.input_value() == ""

    # `assistant feedback export` turns it into a golden-file seed to review.
    from assistant.cli import main

    out = served.tmp / "feedback.jsonl"
    assert main(["feedback", "export", "--index-dir", str(served.service.settings.index_dir), "--out", str(out)]) == 0
    seeds = [json.loads(line) for line in out.read_text().splitlines()]
    seed = next(s for s in seeds if s["feedback"]["comment"] == row.comment)
    assert seed["question"] == QUESTION and seed["answers"] == [] and seed["feedback"]["rating"] == -1
    assert any("90" in e for e in seed["evidence"])


def test_gradio_client_ask_endpoint(served: SimpleNamespace) -> None:
    from gradio_client import Client

    client = Client(served.ui, verbose=False, analytics_enabled=False)  # the call README documents
    try:
        result = client.predict(QUESTION, api_name="/ask")
        follow = client.predict("And how did Trump respond to that?", [QUESTION], 5, api_name="/ask")
    finally:
        client.close()
    assert isinstance(result, dict)
    assert not result["abstained"] and "90" in result["citations"][0]["quote"]
    assert "Zelensky" in follow["standalone_question"]
    assert len(follow["passages"]) <= 5
