"""How `assistant serve` is configured, and the checks that refuse an unsafe or invalid setup."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field

LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str | None = None  # None: no authentication (then only loopback, unless insecure_no_auth)
    allowed_origins: list[str] = field(default_factory=list)  # CORS allowlist; none by default
    frame_ancestors: list[str] = field(default_factory=lambda: ["'self'"])  # who may frame /ui and /embed
    mount_ui: bool = True
    insecure_no_auth: bool = False  # allow a non-loopback host without a key (trusted networks only)


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: ServerConfig) -> None:
    """Refuse to listen beyond this machine without an API key, unless explicitly allowed."""
    if config.api_key is None and not is_loopback(config.host) and not config.insecure_no_auth:
        raise ValueError(
            f"refusing to listen on {config.host} without an API key: anyone who can reach this port could "
            "read and change the index. Set ASSISTANT_API_KEY (or --api-key), or pass --insecure-no-auth "
            "on a trusted network"
        )


def parse_list(values: list[str] | str | None) -> list[str]:
    """Items from repeated flags and/or comma- or space-separated strings, in order, without repeats."""
    if values is None:
        return []
    raw = [values] if isinstance(values, str) else values
    items: list[str] = []
    for value in raw:
        for item in value.replace(",", " ").split():
            if item not in items:
                items.append(item)
    return items


def normalize_frame_ancestors(values: list[str]) -> list[str]:
    """CSP frame-ancestors sources; bare keywords (self, none) get their quotes."""
    sources = []
    for value in values:
        if any(ch in value for ch in ";,\r\n\"") or not value.isprintable():
            raise ValueError(f"frame ancestor {value!r} is not a CSP source (use e.g. 'self' https://portal.example.com)")
        if value.lower() in {"self", "none"}:
            value = f"'{value.lower()}'"
        sources.append(value)
    if "'none'" in sources and len(sources) > 1:
        raise ValueError("frame ancestor 'none' cannot be combined with other sources")
    return sources or ["'self'"]


def check_origins(values: list[str]) -> list[str]:
    origins = []
    for value in values:
        value = value.rstrip("/")
        if value != "*" and not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError(f"allowed origin {value!r} must look like https://portal.example.com")
        origins.append(value)
    return origins


def set_compute_threads(threads: int) -> None:
    """Threads per torch / faiss call. A server gets its parallelism from concurrent requests (and
    batches concurrent query encodes), so 1 is best: more make each call spin-wait for busy cores.
    torch is not imported for this (the ONNX backends never need it: ~2.5 s and 250 MB): if the
    torch backend imports it later, it reads OMP_NUM_THREADS then."""
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, not {threads}")
    import faiss

    faiss.omp_set_num_threads(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
