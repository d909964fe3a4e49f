"""A 50 MB file streams through ingest: the load-and-chunk pipeline's peak memory stays small (measured
in a fresh process), repeated paragraphs are dropped, and every unique line is indexed once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ingest_support import by_name, chunk_texts

from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import Ingestor, document_id
from assistant.settings import Settings

_SENTENCES = [
    "The committee reviewed the annual budget and agreed to fund three new community libraries.",
    "Engineers reported that the bridge inspection found minor corrosion on two support cables.",
    "Local farmers expect a strong harvest thanks to steady rainfall in early summer.",
    "The museum will extend its opening hours on weekends for the river trade exhibition.",
    "A final vote in the regional assembly is expected before the end of the month.",
    "The ferry timetable changes when the winter season begins in late October.",
    "Volunteers repainted the harbour railings and replaced the broken benches.",
    "School buses will use the new bypass road once the last section is paved.",
]
# Four long paragraphs (one line each, ~700 characters), repeated to fill the big file.
_PARAGRAPHS = [" ".join(_SENTENCES[(k + i) % 8] for i in range(8)) for k in range(4)]


def _write_big_file(path: Path, megabytes: int = 50) -> list[str]:
    """Many repetitions of a few long paragraphs plus some unique lines; returns the unique lines."""
    target = megabytes * 1024 * 1024
    unique: list[str] = []
    block = ("\n\n".join(_PARAGRAPHS * 6) + "\n\n").encode("utf-8")
    written = 0
    with open(path, "wb") as handle:
        while written < target:
            line = f"Unique survey note {len(unique)}: archive entry {len(unique) * 7919 % 100003} was filed."
            unique.append(line)
            data = (line + "\n\n").encode("utf-8") + block * 100
            handle.write(data)
            written += len(data)
    return unique


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from assistant import loaders
    from assistant.chunk import Chunker

    def status_kb(key):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith(key))

    path = Path(sys.argv[1])
    chunker = Chunker(160, 32)
    list(chunker.chunks(loaders.load(Path(sys.argv[2])).segments))  # warm up imports and caches
    # Reset the peak-RSS mark (ru_maxrss would carry the forking parent's peak over exec).
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status_kb("VmRSS:")
    started = time.perf_counter()
    count = chars = 0
    for chunk in chunker.chunks(loaders.load(path).segments):
        count += 1
        chars += len(chunk.text)
    print(json.dumps({"peak_growth_kb": status_kb("VmHWM:") - before, "chunks": count, "chars": chars,
                      "seconds": time.perf_counter() - started}))
    """
)


def test_fifty_megabyte_file_is_streamed_not_held(tmp_path: Path, settings: Settings, embedder: Embedder) -> None:
    big = tmp_path / "big.txt"
    unique = _write_big_file(big)
    size = big.stat().st_size
    assert size >= 50 * 1024 * 1024
    warm = tmp_path / "warm.txt"
    warm.write_text("\n\n".join(_PARAGRAPHS) + "\n" + "Warm up line number one. Another one.\n")

    # Memory: peak RSS growth while loading and chunking the whole file, in a fresh process
    # (no torch there, so the number is the text pipeline's own).
    probe = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(big), str(warm)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if "clear_refs" in probe.stderr:
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    assert probe.returncode == 0, probe.stderr
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    growth_mb = facts["peak_growth_kb"] / 1024
    assert growth_mb < 40, f"peak memory grew {growth_mb:.0f} MB for a {size / 2**20:.0f} MB file"
    # Repeated paragraphs are dropped: each unique line, plus the paragraphs' first copy.
    assert len(unique) <= facts["chunks"] < len(unique) + 10

    # The real ingest: streamed, deduplicated, every unique line indexed once.
    report = Ingestor(settings, embedder=embedder).ingest_paths([big], progress=False)
    assert by_name(report)["big.txt"][0] == "added", report.summary()
    assert report.embedded_chunks == by_name(report)["big.txt"][2] == facts["chunks"]
    stored = chunk_texts(settings, embedder)["big.txt"]
    joined = "\n".join(stored)
    for line in unique:
        assert joined.count(line) == 1, line
    for paragraph in _PARAGRAPHS:
        assert paragraph[:80] in joined
    assert len(joined) < 3 * (sum(map(len, unique)) + sum(map(len, _PARAGRAPHS)))
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        doc = store.document(document_id(str(big.resolve())))
        assert doc is not None and doc.size == size
