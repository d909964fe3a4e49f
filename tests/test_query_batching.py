"""Concurrent `Embedder.encode_query` calls share model calls (the server's many requests at once)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from assistant.embed import Embedder, _QueryBatcher

QUESTIONS = [f"{subject} question number {i}?" for i, subject in
             enumerate(["When was the lighthouse built", "How deep is the crater lake", "Who pruned the orchard",
                        "What did the minister say about the drones"] * 8)]


def test_concurrent_queries_are_batched_and_equal_single_encodes(embedder: Embedder,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {q: embedder.encode([q])[0] for q in set(QUESTIONS)}
    calls: list[int] = []
    real_encode = embedder.encode
    gate = threading.Event()

    def counting_encode(texts: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(len(texts))
        gate.wait(5)  # the first call holds the model while the other threads queue up
        return real_encode(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode", counting_encode)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        futures = [pool.submit(embedder.encode_query, q) for q in QUESTIONS]
        threading.Timer(0.5, gate.set).start()
        vectors = [f.result(timeout=60) for f in futures]
    assert sum(calls) == len(QUESTIONS) and len(calls) < len(QUESTIONS) / 4, calls
    for q, vector in zip(QUESTIONS, vectors, strict=True):
        assert vector.shape == (embedder.dim,)
        assert float(np.dot(vector, expected[q])) > 0.99999, q


def test_a_lone_query_is_encoded_at_once(embedder: Embedder) -> None:
    vector = embedder.encode_query("When was the lighthouse built?")
    assert np.allclose(vector, embedder.encode(["When was the lighthouse built?"])[0], atol=1e-5)


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_batch_works() -> None:
    gate = threading.Event()
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        gate.wait(5)
        if any("boom" in t for t in texts):
            raise RuntimeError("model failed")
        return np.ones((len(texts), 3), dtype=np.float32)

    batcher = _QueryBatcher(encode)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher, "fine")
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:  # "fine" holds the model before the others queue
            time.sleep(0.01)
        threading.Timer(0.3, gate.set).start()
        rest = [pool.submit(batcher, t) for t in ("boom", "also queued", "queued too")]
        assert first.result(timeout=10).shape == (3,)
        errors = [f.exception(timeout=10) for f in rest]
    assert all(isinstance(e, RuntimeError) for e in errors), errors
    assert calls[1] == ["boom", "also queued", "queued too"]
    assert batcher("after").tolist() == [1.0, 1.0, 1.0]
