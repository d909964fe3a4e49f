"""A tiny OpenAI-compatible server on loopback whose behaviour is picked by the URL's first part.

`http://127.0.0.1:PORT/<scenario>/v1` with scenario:
- `wrong`: a deliberately wrong answer — one supported sentence, one the cited source does not
  support, one citing a source that does not exist ([9]); streams when asked to;
- `auth`: 401 with OpenAI's error body; `ratelimit`: 429 twice, then the `wrong` answer;
- `malformed`: a stream that breaks into data that is not JSON; `overflow`: 400 "maximum context length";
- `sleep`: accepts and says nothing for 5 s (timeouts).
Only the verifier and error paths are under test here; real model output is in test_llm_local.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SUPPORTED = "The new pier was designed by engineer Tove Rask"
UNSUPPORTED = "The pier was paid for by the Lindqvist bakery"
OUT_OF_RANGE = "The pier opened to the public in 1961"


def wrong_answer(prompt: str) -> str:
    """Cites the source that holds the pier sentence for the first two claims, [9] for the third."""
    sources = re.findall(r'<source n="(\d+)"[^>]*>\n(.*?)\n</source>', prompt, flags=re.S)
    pier = next((n for n, text in sources if "Tove Rask" in text), "1")
    return f"{SUPPORTED} [{pier}]. {UNSUPPORTED} [{pier}]. {OUT_OF_RANGE} [9]."


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                                             "owned_by": "tests"}]})

            def do_POST(self) -> None:  # noqa: N802
                scenario = self.path.strip("/").split("/")[0]
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.requests.append({"scenario": scenario, "body": body})
                count = server.counts[scenario] = server.counts.get(scenario, 0) + 1
                prompt = body["messages"][-1]["content"] if body.get("messages") else ""
                if scenario == "sleep":
                    time.sleep(5)
                    return
                if scenario == "auth":
                    return self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}})
                if scenario == "overflow":
                    return self._json(400, {"error": {"message": "This model's maximum context length is 512 tokens",
                                                      "type": "invalid_request_error", "code": "context_length_exceeded"}})
                if scenario == "ratelimit" and count <= 2:
                    return self._json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                                      {"retry-after-ms": "20"})
                if scenario == "malformed":  # one good piece, then garbage
                    return self._sse([json.dumps(_chunk("The new pier ")), "{not json"])
                text = wrong_answer(prompt)
                if body.get("stream"):
                    pieces = re.findall(r"\S+\s*", text)
                    chunks = [json.dumps(_chunk(p)) for p in pieces] + [json.dumps(_chunk("", "stop"))]
                    return self._sse(chunks)
                return self._json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake-model",
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                     "finish_reason": "stop"}],
                                        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}})

            def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _sse(self, datas: list[str]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for data in datas:
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _chunk(piece: str, finish: str | None = None) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "delta": {"content": piece} if piece else {}, "finish_reason": finish}]}
