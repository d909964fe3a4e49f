"""The embedding model's word pieces without transformers: `tokenizer.json` read by the Rust
`tokenizers` library (transformers' AutoTokenizer would import torch: ~2.5 s and 250 MB), a private
truncating copy for encoding, and pooling token vectors into the vectors of character spans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def pool_spans(hidden: np.ndarray, offsets: Sequence[tuple[int, int]], special: Sequence[int],
               spans: Sequence[tuple[int, int]], fallback: np.ndarray) -> np.ndarray:
    """Per (start, end) character span: the mean of the token vectors (`hidden`, one row per token)
    whose offsets overlap [start, end), special tokens excluded, L2-normalized (float32). A span
    with no such token (past the truncation, or only whitespace) gets `fallback` (the chunk vector)."""
    dim = hidden.shape[-1]
    if len(spans) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    n = min(len(offsets), hidden.shape[0])
    tok = np.asarray(offsets[:n], dtype=np.int64).reshape(n, 2)
    keep = ~np.asarray(special[:n], dtype=bool) if len(special) else np.ones(n, dtype=bool)
    keep &= tok[:, 1] > tok[:, 0]
    tok, states = tok[keep], np.asarray(hidden[:n][keep], dtype=np.float32)
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    weights = ((tok[None, :, 0] < bounds[:, 1:2]) & (tok[None, :, 1] > bounds[:, 0:1])).astype(np.float32)
    counts = weights.sum(axis=1)
    pooled = (weights @ states) / np.clip(counts, 1.0, None)[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    pooled = pooled / np.clip(norms, 1e-12, None)
    empty = (counts == 0) | (norms[:, 0] == 0)
    if empty.any():
        pooled[empty] = np.asarray(fallback, dtype=np.float32)
    return np.ascontiguousarray(pooled, dtype=np.float32)


class FastTokenizer:
    """The model's `tokenizer.json` in the Rust `tokenizers` library, with the few attributes of a
    transformers fast tokenizer this package uses. Loading transformers' AutoTokenizer imports torch
    (about 2.5 s and 250 MB of RSS), which the ONNX path otherwise never needs."""

    is_fast = True

    def __init__(self, model_path: Path) -> None:
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.backend_tokenizer.no_truncation()  # the file may carry a fixed length (128 for MiniLM)
        self.backend_tokenizer.no_padding()
        config = read_json(model_path / "tokenizer_config.json")
        pad = str(config.get("pad_token") or "[PAD]")
        self.pad_token_id = self.backend_tokenizer.token_to_id(pad) or 0
        self.model_max_length = int(config.get("model_max_length") or 512)

    def __call__(self, text: str, add_special_tokens: bool = True, truncation: bool = False) -> dict[str, list[int]]:
        """Untruncated ids (`truncation` is accepted for call compatibility; nothing is cut)."""
        return {"input_ids": self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}


def private_tokenizer(tokenizer: Any, max_length: int | None) -> Any:
    """A copy of the fast tokenizer's Rust backend with no padding, truncating at `max_length`
    (None: never truncating, for counting)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length=max_length)
    return backend


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
