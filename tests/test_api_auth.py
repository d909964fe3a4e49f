"""Who may call the API and frame its pages: the API key, CORS for listed origins only, and the
frame-ancestors policy, on the open and the keyed server of conftest.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_support import EVIL, KEY, PORTAL, Served, listing
from support import ServerThread, wait_ready

from assistant.embed import Embedder
from assistant.service import AssistantService
from assistant.settings import Settings
from assistant.web.app import create_app
from assistant.web.config import ServerConfig

# -- auth --------------------------------------------------------------------------------------


def test_api_needs_the_key_when_one_is_set(auth_server: Served) -> None:
    url = auth_server.url
    r = httpx.post(url + "/api/ask", json={"question": "When was the lighthouse built?"})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in (f"Bearer {KEY}x", "Bearer", f"Basic {KEY}", KEY, f"Bearer {KEY[:-1]}"):
        r = httpx.get(url + "/api/documents", headers={"Authorization": header})
        assert r.status_code == 401, header
    for method, path in (("GET", "/api/search?q=x"), ("GET", "/api/documents"), ("DELETE", "/api/documents/x"),
                         ("POST", "/api/feedback"), ("POST", "/api/ask/stream"), ("GET", "/api/passage"),
                         ("GET", "/api/info")):
        assert httpx.request(method, url + path).status_code == 401, path
    r = httpx.post(url + "/api/ask", json={"question": "When was the lighthouse built?"},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and "1871" in r.json()["answer"]
    r = httpx.get(url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_auth_is_checked_before_reading_an_upload(auth_server: Served) -> None:
    before = listing(httpx.Client(base_url=auth_server.url), {"Authorization": f"Bearer {KEY}"})["stats"]
    r = httpx.post(auth_server.url + "/api/documents", files=[("files", ("x.txt", b"sneaky", "text/plain"))])
    assert r.status_code == 401
    after = listing(httpx.Client(base_url=auth_server.url), {"Authorization": f"Bearer {KEY}"})["stats"]
    assert after["documents"] == before["documents"] and not (auth_server.uploads / "x.txt").exists()


def test_open_server_needs_no_key(client: httpx.Client) -> None:
    assert client.get("/api/documents").status_code == 200


# -- CORS and framing --------------------------------------------------------------------------


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(url + "/api/ask", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization, content-type"})


@pytest.mark.parametrize("server_name", ["open_server", "auth_server"])
def test_cors_preflight_allows_only_listed_origins(server_name: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(server_name).url
    r = _preflight(url, PORTAL)
    assert r.status_code == 200  # no key needed for a preflight, even with auth on
    assert r.headers["access-control-allow-origin"] == PORTAL
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = _preflight(url, EVIL)
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_cors_headers_on_responses(open_server: Served, auth_server: Served) -> None:
    r = httpx.get(open_server.url + "/api/documents", headers={"Origin": PORTAL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PORTAL
    r = httpx.get(open_server.url + "/api/documents", headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = httpx.get(auth_server.url + "/api/documents", headers={"Origin": PORTAL})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PORTAL  # the portal can read why


def test_no_cors_without_configured_origins(tmp_path: Path, embedder: Embedder) -> None:
    service = AssistantService(Settings(index_dir=tmp_path / "index"), embedder=embedder)
    try:
        with ServerThread(create_app(service, ServerConfig(port=0, mount_ui=False))) as url:
            wait_ready(url)
            assert _preflight(url, PORTAL).status_code == 400
            r = httpx.get(url + "/healthz", headers={"Origin": "http://127.0.0.1:9999"})
            assert "access-control-allow-origin" not in r.headers
    finally:
        service.close()


def test_frame_ancestors_header(open_server: Served, auth_server: Served) -> None:
    for url, expected in ((open_server.url, "frame-ancestors 'self'"),
                          (auth_server.url, f"frame-ancestors 'self' {PORTAL}")):
        for path in ("/embed", "/healthz", "/api/info"):
            r = httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"})
            csp = r.headers["content-security-policy"]
            assert csp.endswith(expected) or expected + ";" in csp, (path, csp)
            assert "x-frame-options" not in r.headers
