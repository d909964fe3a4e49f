"""The pages the server serves: the self-contained /embed page (its CSP, and in a real headless
browser: streaming, citations, markup shown literally, the key from the fragment) and the Gradio UI."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import shutil
from pathlib import Path

import httpx
import pytest
from api_support import KEY, Served, ui_available

# -- the embed page ----------------------------------------------------------------------------


def test_embed_page_is_self_contained_and_inserts_text_only(client: httpx.Client) -> None:
    r = client.get("/embed")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'data-auth="0"' in html and 'id="q"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load external assets"
    script = re.search(r"<script>(.*)</script>", html, re.S)
    assert script is not None
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script.group(1), sink
    assert "textContent" in script.group(1) and "createTextNode" in script.group(1)
    # The CSP allows exactly this script and style, by hash: no other script can run.
    csp = r.headers["content-security-policy"]
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_embed_page_knows_when_a_key_is_needed(auth_server: Served) -> None:
    r = httpx.get(auth_server.url + "/embed")  # the page itself is public; its API calls need the key
    assert r.status_code == 200 and 'data-auth="1"' in r.text


@contextlib.contextmanager
def _browser():  # type: ignore[no-untyped-def]
    """Headless Debian Chromium driven by Playwright (skips when either is missing)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def test_embed_page_in_a_browser_streams_cites_and_shows_markup_literally(open_server: Served) -> None:
    with _browser() as browser:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(open_server.url + "/embed", wait_until="domcontentloaded")
        page.fill("#q", "What is the codename of the Tuesday project?")
        page.press("#q", "Enter")
        page.wait_for_selector(".citations li button", timeout=30_000)
        answer = page.inner_text(".answer")
        assert "BLUEFINCH" in answer and '<img src=x onerror="window.__xss=1">' in answer
        assert page.evaluate("window.__xss") is None and not dialogs
        assert page.locator(".answer img, .answer script, #log img").count() == 0
        page.click(".citations li button")
        page.wait_for_selector(".preview mark")
        mark = page.inner_text(".preview mark")
        assert "BLUEFINCH" in mark and "<img" in mark
        assert page.inner_text(".preview").index(mark) > 0  # the quote sits inside its passage
        assert page.evaluate("window.__xss") is None and page.locator(".preview img").count() == 0
        page.click(".rate button[aria-label='helpful']")
        page.locator(".rate", has_text="Thanks for the feedback").wait_for()  # (CSP forbids eval'd waits)
    assert any(item.question == "What is the codename of the Tuesday project?" and item.rating == 1
               for item in open_server.service.feedback.items())


def test_embed_page_in_a_browser_takes_the_key_from_the_fragment(auth_server: Served) -> None:
    with _browser() as browser:
        page = browser.new_page()
        page.goto(auth_server.url + "/embed", wait_until="domcontentloaded")
        assert page.is_visible("#keyform")  # no key yet: the page asks for it
        page.fill("#q", "Anything?")
        page.press("#q", "Enter")
        assert "API key" in page.inner_text("#status") and page.locator(".turn").count() == 0
        page = browser.new_page()  # a new tab: empty sessionStorage
        page.goto(auth_server.url + f"/embed#key={KEY}", wait_until="domcontentloaded")
        assert "key=" not in page.url  # the key leaves the address bar
        assert not page.is_visible("#keyform")
        page.fill("#q", "How many varieties of apple does the orchard grow?")
        page.press("#q", "Enter")
        page.wait_for_selector(".citations li button", timeout=30_000)
        assert "fourteen" in page.inner_text(".answer")


# -- the Gradio UI (when assistant.ui.build_ui exists) -----------------------------------------


def test_root_redirects_to_the_ui_or_the_embed_page(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code in (302, 307)
    assert r.headers["location"] == ("/ui/" if ui_available() else "/embed")


def test_ui_is_mounted_with_frame_ancestors(client: httpx.Client) -> None:
    if not ui_available():
        pytest.skip("assistant.ui.build_ui does not exist yet")
    r = client.get("/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["content-security-policy"] == "frame-ancestors 'self'" and "x-frame-options" not in r.headers
    assert client.get("/ui/config").status_code == 200


def test_ui_requires_the_key_as_password(auth_server: Served) -> None:
    if not ui_available():
        pytest.skip("assistant.ui.build_ui does not exist yet")
    with httpx.Client(base_url=auth_server.url) as c:
        assert c.get("/ui/config").status_code == 401
        assert '"auth_required":true' in c.get("/ui/").text.replace(" ", "")
        assert c.post("/ui/login", data={"username": "anyone", "password": "wrong"}).status_code == 400
        r = c.post("/ui/login", data={"username": "anyone", "password": KEY})
        assert r.status_code == 200 and r.json() == {"success": True}
        assert c.get("/ui/config").status_code == 200
