"""Helpers for tests: one real embedding model per test process, and the shared data folder."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@lru_cache(maxsize=1)
def shared_embedder():  # type: ignore[no-untyped-def]
    from assistant.embed import Embedder

    embedder = Embedder("all-MiniLM-L6-v2")
    embedder.encode(["warm up"])
    return embedder


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that need ../shared skip without it)")
    return path
