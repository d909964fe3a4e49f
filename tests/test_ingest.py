"""Ingest with the real model and real FAISS: bad files fail alone, re-runs are incremental, and a
killed ingest leaves a usable index (big files streaming: test_ingest_big_file.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_support import by_name, chunk_texts, top_source

from assistant.embed import Embedder
from assistant.index import IndexStore, ModelMismatchError
from assistant.ingest import Ingestor, TextItem
from assistant.settings import Settings

# -- 1. bad files fail one by one; the batch and the index survive ----------------------


def test_each_bad_file_fails_alone_and_good_files_are_added(
    tmp_path: Path,
    settings: Settings,
    embedder: Embedder,
    check_index,
    pdf_with_text: Callable[[list[str]], bytes],
    encrypted_pdf: Callable[[Path], Path],
    make_docx: Callable[..., Path],
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text(
        "Harbour log\n\nThe Vessa ferry carried 412 passengers on Sunday, a record for the winter season.\n",
        encoding="utf-8",
    )
    (docs / "notes.md").write_text("# Library\n\nThe reading room reopens on 4 March after the roof repair.\n")
    (docs / "page.html").write_text(
        "<html><head><title>Tides</title><script>var secretToken = 'quokka-velvet-77';</script></head>"
        "<body><h1>Tides</h1><p>High water at the north pier is at 06:12 tomorrow.</p>"
        "<script>console.log('hidden marmalade')</script></body></html>"
    )
    make_docx(docs / "minutes.docx", "Minutes", ["The council approved a new skate park next to the school."])
    (docs / "report.pdf").write_bytes(pdf_with_text(["Bridge inspection report.",
                                                     "Two support cables show minor corrosion."]))
    (docs / "legacy.txt").write_bytes("The caf\u00e9 on the quay sells cr\u00e8me br\u00fbl\u00e9e and "
                                      "na\u00efve paintings by local artists.\n".encode("cp1252"))
    # The bad ones.
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + random.Random(2).randbytes(3000))
    rng = random.Random(3)
    (docs / "garbage.txt").write_bytes(bytes(rng.randrange(128, 256) for _ in range(3000)))
    (docs / "corrupt.pdf").write_bytes(random.Random(4).randbytes(4096))
    encrypted_pdf(docs / "locked.pdf")
    (docs / "data.xyz").write_text("unsupported format")
    (docs / ".hidden.txt").write_text("Hidden files are not indexed at all.")
    missing = tmp_path / "no-such-file.txt"

    report = Ingestor(settings, embedder=embedder).ingest_paths([docs, missing], progress=False)
    results = by_name(report)

    good = ["good.txt", "notes.md", "page.html", "minutes.docx", "report.pdf", "legacy.txt"]
    for name in good:
        assert results[name][0] == "added", (name, results[name])
        assert results[name][2] >= 1
    expected_failures = {
        "empty.txt": "empty",
        "binary.txt": "binary",
        "garbage.txt": "undecodable",
        "corrupt.pdf": "corrupt",
        "locked.pdf": "encrypted",
        "no-such-file.txt": "no such file",
    }
    for name, word in expected_failures.items():
        status, reason, _ = results[name]
        assert status == "failed" and word in reason.lower(), (name, status, reason)
    assert results["data.xyz"][0] == "skipped" and "unsupported" in results["data.xyz"][1]
    assert ".hidden.txt" not in results
    assert len(report.failed) == len(expected_failures)
    assert report.count("added") == len(good)
    assert report.embedded_chunks == sum(results[name][2] for name in good)
    summary = report.summary()
    for name in expected_failures:
        assert name in summary

    # The index holds exactly the good files and answers from them.
    counts = check_index(settings.index_dir)
    assert counts["documents"] == len(good) and counts["chunks"] == report.embedded_chunks
    texts = chunk_texts(settings, embedder)
    assert set(texts) == set(good)
    assert any("caf\u00e9 on the quay sells cr\u00e8me br\u00fbl\u00e9e" in t for t in texts["legacy.txt"])
    page = " ".join(texts["page.html"])
    assert "06:12" in page and "quokka" not in page and "secretToken" not in page and "marmalade" not in page
    assert top_source(settings, embedder, "How many passengers did the ferry carry?") == "good.txt"
    assert top_source(settings, embedder, "Which cables are corroded on the bridge?") == "report.pdf"
    assert top_source(settings, embedder, "Where will the skate park be built?") == "minutes.docx"

    # Still writable after the failures: a re-run changes nothing, a new file is added.
    again = Ingestor(settings, embedder=embedder).ingest_paths([docs], progress=False)
    assert again.embedded_chunks == 0 and again.count("unchanged") == len(good)
    assert len(again.failed) == len(expected_failures) - 1  # the missing path was not passed again
    (docs / "late.txt").write_text("A late addition about the lighthouse keeper's cottage.")
    late = Ingestor(settings, embedder=embedder).ingest_paths([docs / "late.txt"], progress=False)
    assert by_name(late)["late.txt"][0] == "added"
    assert check_index(settings.index_dir)["documents"] == len(good) + 1


# -- 2. incremental re-ingest, remove, prune ---------------------------------------------


def _article(topic: str, n: int, marker: str) -> str:
    rng = random.Random(topic)
    words = "budget council harbour ferry bridge winter museum river library farmer schedule".split()
    sentences = [f"{topic.capitalize()} report {marker}."]
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(8, 18)))
        sentences.append(f"In {topic} item {i} the {body} was noted.")
    return "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)) + "\n"


def test_incremental_update_remove_and_prune(tmp_path: Path, settings: Settings, embedder: Embedder,
                                             check_index) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "alpha.txt").write_text(_article("alpha", 30, "first edition"))
    (docs / "beta.md").write_text(_article("beta", 12, "only edition"))
    (docs / "gamma.txt").write_text(_article("gamma", 8, "only edition"))
    ingestor = Ingestor(settings, embedder=embedder)

    first = ingestor.ingest_paths([docs], progress=False)
    assert first.count("added") == 3 and not first.failed
    assert first.embedded_chunks == sum(r.chunks for r in first.results) == check_index(settings.index_dir)["chunks"]
    generation = int(IndexStore.read_manifest(settings.index_dir)["generation"])

    # Same files again: nothing embedded, nothing rewritten.
    (docs / "gamma.txt").touch()  # a new mtime with the same bytes is still unchanged
    second = ingestor.ingest_paths([docs], progress=False)
    assert second.embedded_chunks == 0
    assert {r.status for r in second.results} == {"unchanged"} and len(second.results) == 3
    assert [r.chunks for r in second.results] == [r.chunks for r in first.results]
    assert int(IndexStore.read_manifest(settings.index_dir)["generation"]) == generation

    # One file changes: only its chunks are embedded; its old chunks are gone.
    (docs / "alpha.txt").write_text(_article("alpha", 14, "second edition"))
    third = ingestor.ingest_paths([docs], progress=False)
    results = by_name(third)
    assert results["alpha.txt"][0] == "updated"
    assert results["beta.md"][0] == results["gamma.txt"][0] == "unchanged"
    assert third.embedded_chunks == results["alpha.txt"][2]
    assert results["alpha.txt"][2] < by_name(first)["alpha.txt"][2]
    counts = check_index(settings.index_dir)
    assert counts["documents"] == 3
    assert counts["chunks"] == sum(r[2] for r in results.values())
    texts = chunk_texts(settings, embedder)
    assert any("second edition" in t for t in texts["alpha.txt"])
    assert not any("first edition" in t for t in texts["alpha.txt"])
    current = (docs / "alpha.txt").read_text()
    assert all(t in current for t in texts["alpha.txt"])

    # Remove by path, then by document id; an unknown target fails without harm.
    gone = ingestor.remove([str(docs / "beta.md")])
    assert [(Path(r.source).name, r.status) for r in gone.results] == [("beta.md", "removed")]
    gamma_id = next(r.doc_id for r in first.results if r.source.endswith("gamma.txt"))
    gone = ingestor.remove([gamma_id, "d0000000000000000"])
    assert [r.status for r in gone.results] == ["removed", "failed"]
    assert "not in the index" in gone.results[1].reason
    assert check_index(settings.index_dir)["documents"] == 1
    assert set(chunk_texts(settings, embedder)) == {"alpha.txt"}

    # Prune: a deleted file leaves the index on the next run with --prune.
    restored = ingestor.ingest_paths([docs], progress=False)
    assert restored.count("added") == 2 and restored.count("unchanged") == 1
    (docs / "gamma.txt").unlink()
    pruned = ingestor.ingest_paths([docs], prune=True, progress=False)
    assert ("removed", "file is gone") == by_name(pruned)["gamma.txt"][:2]
    assert pruned.embedded_chunks == 0
    counts = check_index(settings.index_dir)
    assert counts["documents"] == 2
    assert set(chunk_texts(settings, embedder)) == {"alpha.txt", "beta.md"}


class _WideEmbedder(Embedder):
    """The same model name, but (as if the folder behind the name had changed) 768-dim vectors."""

    @property
    def dim(self) -> int:
        return 768


def test_unchanged_reingest_does_not_load_the_model_and_a_changed_dim_is_refused(
        settings: Settings, embedder: Embedder, check_index) -> None:
    items = [TextItem(f"note:{i}", f"Note {i}\n\nThe Vessa ferry carried {400 + i} passengers on day {i}.")
             for i in range(5)]
    first = Ingestor(settings, embedder=embedder).ingest_texts(items, progress=False)
    assert first.count("added") == 5
    generation = IndexStore.read_manifest(settings.index_dir)["generation"]

    # A new process re-ingesting the same texts opens the index with its recorded dim: the model
    # (seconds to load) is never needed, and nothing is written.
    fresh = Embedder(embedder.name)
    again = Ingestor(settings, embedder=fresh).ingest_texts(items, progress=False)
    assert again.count("unchanged") == 5 and again.embedded_chunks == 0
    assert fresh._model is None
    assert IndexStore.read_manifest(settings.index_dir)["generation"] == generation

    # Something to embed: the model's real dim is checked before anything is written.
    wide = _WideEmbedder(embedder.name)
    wide._model = embedder.model  # the chunker needs the tokenizer; no second load
    changed = [TextItem("note:0", "Note 0\n\nThe ferry now carries 9 passengers.")]
    with pytest.raises(ModelMismatchError, match="768-dim"):
        Ingestor(settings, embedder=wide).ingest_texts(changed, progress=False)
    assert IndexStore.read_manifest(settings.index_dir)["generation"] == generation
    assert check_index(settings.index_dir)["documents"] == 5


# -- 3. SIGKILL in the middle of an ingest ------------------------------------------------

_KILLED_INGEST = textwrap.dedent(
    """
    import sys
    from assistant.ingest import Ingestor
    from assistant.settings import Settings

    settings = Settings(index_dir=sys.argv[1], checkpoint_chunks=20, embed_batch_chunks=16)
    report = Ingestor(settings).ingest_paths([sys.argv[2]], progress=False)
    print("FINISHED", report.count("added"), flush=True)
    """
)


def test_killed_ingest_leaves_a_consistent_index_and_resumes(
    tmp_path: Path, settings: Settings, embedder: Embedder, check_index
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "ferry.txt").write_text("The Vessa ferry leaves the north pier at 07:40 every weekday.")
    (base / "bakery.txt").write_text("The Lindqvist bakery on Canal Street sells 600 loaves on Saturdays.")
    assert Ingestor(settings, embedder=embedder).ingest_paths([base], progress=False).count("added") == 2
    generation = int(IndexStore.read_manifest(settings.index_dir)["generation"])

    bulk = tmp_path / "bulk"
    bulk.mkdir()
    rng = random.Random(42)
    words = "harbour council ferry budget winter library bridge station survey archive river market".split()
    total = 300
    for i in range(total):
        body = " ".join(rng.choice(words) for _ in range(25))
        (bulk / f"note-{i:03d}.txt").write_text(f"Note {i} about {rng.choice(words)}. The {body} item {i}.\n")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path / "ingest.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", _KILLED_INGEST, str(settings.index_dir), str(bulk)],
                                   stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 150
        while int(IndexStore.read_manifest(settings.index_dir).get("generation", 0)) <= generation:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the ingest never committed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert "FINISHED" not in log.read_text()

    # Read-only reopen: loads, FAISS and SQLite agree row for row, search works.
    counts = check_index(settings.index_dir)
    assert 2 < counts["documents"] < 2 + total, counts  # killed part-way, after a checkpoint
    assert top_source(settings, embedder, "When does the ferry leave?") == "ferry.txt"

    # Writable reopen: the same ingest finishes; committed files are not embedded again.
    report = Ingestor(settings, embedder=embedder).ingest_paths([bulk], progress=False)
    assert not report.failed, report.summary()
    assert report.count("unchanged") == counts["documents"] - 2
    assert report.count("added") == total - report.count("unchanged")
    assert report.embedded_chunks == sum(r.chunks for r in report.results if r.status == "added")
    final = check_index(settings.index_dir)
    assert final["documents"] == 2 + total and final["chunks"] == final["vectors"]
    leftovers = sorted(p.name for p in settings.index_dir.iterdir() if "vectors" in p.name)
    assert leftovers == [IndexStore.read_manifest(settings.index_dir)["vectors_file"]]
