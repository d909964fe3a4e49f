"""Ctrl-C stops an ingest within 2 s (issue 12, problem 5).

A real `assistant ingest` in a subprocess embeds 24 small notes and then one long file; small
batches and checkpoints make it commit the first 16 notes. SIGINT right after that commit, while
the encoder is busy with about 1,200 chunks (6 s of int8 model time, 12 s of fp32): the
process must exit within 2 s with status 130 and "interrupted; the index is as it was before
<the first uncommitted file>", and the index must hold exactly what was committed, consistent
row for row, with its write lock free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from assistant.embed import Embedder
from assistant.index import IndexStore
from assistant.ingest import Ingestor
from assistant.settings import Settings


def _default_sigint() -> None:
    """The child gets Ctrl-C's default action even when this test runs as a background job of a
    non-interactive shell (which starts it with SIGINT ignored, and Python keeps an ignored SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_ingest_within_2_s_and_keeps_the_committed_state(tmp_path: Path, embedder: Embedder,
                                                                          check_index) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    base = tmp_path / "base"
    base.mkdir()
    (base / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.")
    assert Ingestor(settings, embedder=embedder).ingest_paths([base], progress=False).count("added") == 1
    generation = int(IndexStore.read_manifest(settings.index_dir)["generation"])

    bulk = tmp_path / "bulk"
    bulk.mkdir()
    for i in range(24):
        (bulk / f"a-note-{i:02d}.txt").write_text(f"Note {i}: the council survey of bridge number {i} is done.\n")
    sentences = [f"Section {i} of the harbour survey lists {i * 7} moorings and {i % 13} cranes by the pier."
                 for i in range(12000)]
    (bulk / "z-long.txt").write_text("\n".join(sentences))  # ~1,200 chunks: seconds of model time even in int8

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "ASSISTANT_EMBED_BATCH_CHUNKS": "16", "ASSISTANT_CHECKPOINT_CHUNKS": "10"}
    code = "import sys; from assistant.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", code, "ingest", str(bulk), "--index-dir", str(settings.index_dir),
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 150
        while int(IndexStore.read_manifest(settings.index_dir).get("generation", 0)) <= generation:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the ingest never committed"
            time.sleep(0.02)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err.decode()
    assert process.returncode == 130, (process.returncode, stderr[-2000:])
    assert took < 2.0, f"Ctrl-C took {took:.1f} s to stop the ingest"
    first = (bulk / "a-note-16.txt").resolve()
    assert f"interrupted; the index is as it was before {first}" in stderr, stderr[-2000:]

    counts = check_index(settings.index_dir)
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim) as store:
        names = sorted(Path(d.source).name for d in store.documents())
    assert names == [f"a-note-{i:02d}.txt" for i in range(16)] + ["ferry.txt"], names
    assert counts["documents"] == 17
    with IndexStore.open(settings.index_dir, embedder.name, embedder.dim, writable=True):
        pass  # the lock was released
