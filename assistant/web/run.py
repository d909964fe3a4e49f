"""`assistant serve`: the app on uvicorn in the foreground, saying where to find it once listening."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from assistant.service import AssistantService
from assistant.web.app import create_app
from assistant.web.config import ServerConfig, check_exposure, is_loopback


class ListeningServer(uvicorn.Server):
    """uvicorn.Server that reports once its sockets listen (the base URL, for printing)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.on_listening = on_listening
        self.base_url = ""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else (
            f"[{host}]" if ":" in host else host)
        self.base_url = f"http://{shown}:{port}"
        if self.on_listening is not None:
            self.on_listening(self.base_url)


def uvicorn_config(app: FastAPI, host: str, port: int, **kwargs: Any) -> uvicorn.Config:
    # Keep-alive longer than clients' and proxies' idle pools (httpx 5 s, nginx 60-75 s): with
    # uvicorn's 5 s default, a pooled connection can be closed just as a request goes out on it.
    return uvicorn.Config(app, host=host, port=port, timeout_keep_alive=75, timeout_graceful_shutdown=5, **kwargs)


def serve(service: AssistantService, config: ServerConfig, log_level: str = "info") -> None:
    """Run the server in the foreground until Ctrl-C; prints where to find it once listening."""
    check_exposure(config)
    app = create_app(service, config)

    def announce(base: str) -> None:
        if config.api_key is None and is_loopback(config.host):
            print("No API key: listening only on loopback; set ASSISTANT_API_KEY to expose the server "
                  "to other machines.", flush=True)
        elif config.api_key is None:
            print(f"WARNING: no API key and listening on {config.host} (--insecure-no-auth): anyone who can "
                  "reach this port can read and change the index.", flush=True)
        else:
            print("API key required: 'Authorization: Bearer <key>' for /api; the key is the UI password.", flush=True)
        if config.mount_ui:
            print(f"Chat UI: {base}/ui/", flush=True)
        print(f"API docs: {base}/docs", flush=True)
        print(f"Embed page: {base}/embed", flush=True)

    server = ListeningServer(uvicorn_config(app, config.host, config.port, log_level=log_level), on_listening=announce)
    server.run()
