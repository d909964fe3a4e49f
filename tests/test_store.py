"""The index folder: model manifest, one writer at a time, atomic commits, FAISS == SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.embed import Embedder
from assistant.index import DocumentRecord, IndexLockedError, IndexStore, ModelMismatchError, StoreError
from assistant.ingest import Ingestor
from assistant.settings import Settings

TEXTS = [
    "The lighthouse on Skarv island was automated in 1987.",
    "Ferries to the island leave twice a day in summer.",
    "The island school closed when the last family moved away.",
]


def put(store: IndexStore, embedder: Embedder, doc_id: str, texts: list[str]) -> None:
    rows = []
    offset = 0
    for i, text in enumerate(texts):
        rows.append((i, offset, offset + len(text), len(text.split()), text))
        offset += len(text) + 1
    record = DocumentRecord(doc_id, f"/docs/{doc_id}.txt", doc_id.title(), "hash-" + doc_id, offset, len(texts),
                            time.time())
    store.put_document(record, rows, embedder.encode(texts))


@pytest.fixture
def folder(tmp_path: Path, embedder: Embedder) -> Path:
    """An index with one committed document."""
    path = tmp_path / "index"
    with IndexStore.open(path, embedder.name, embedder.dim, writable=True) as store:
        put(store, embedder, "island", TEXTS)
        store.commit()
    return path


def test_model_mismatch_says_how_to_rebuild(folder: Path, embedder: Embedder) -> None:
    with pytest.raises(ModelMismatchError) as info:
        IndexStore.open(folder, "other-model", 384)
    message = str(info.value)
    assert embedder.name in message and "other-model" in message
    assert "rebuild" in message and "delete" in message and str(folder) in message
    assert "assistant ingest" in message
    with pytest.raises(ModelMismatchError, match="dim 768"):
        IndexStore.open(folder, embedder.name, 768)
    # A refused writer leaves the index unlocked and intact.
    with pytest.raises(ModelMismatchError):
        IndexStore.open(folder, "other-model", 384, writable=True)
    with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as store:
        assert store.stats()["documents"] == 1
    assert IndexStore.read_manifest(folder)["model"] == embedder.name


def test_second_writer_gets_index_locked_error(folder: Path, embedder: Embedder, tmp_path: Path) -> None:
    writer = IndexStore.open(folder, embedder.name, embedder.dim, writable=True)
    try:
        with pytest.raises(IndexLockedError) as info:
            IndexStore.open(folder, embedder.name, embedder.dim, writable=True)
        assert "locked" in str(info.value) and f"pid {os.getpid()}" in str(info.value)
        # The same from another process, and through the ingest entry point.
        code = (
            "import sys\n"
            "from assistant.index import IndexStore, IndexLockedError\n"
            "try:\n"
            f"    IndexStore.open(sys.argv[1], {embedder.name!r}, {embedder.dim}, writable=True)\n"
            "except IndexLockedError as exc:\n"
            "    print('LOCKED', exc); sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode == 3, other.stdout + other.stderr
        source = tmp_path / "note.txt"
        source.write_text("A note about the island ferry timetable.")
        with pytest.raises(IndexLockedError):
            Ingestor(Settings(index_dir=folder), embedder=embedder).ingest_paths([source], progress=False)
        # Readers are never blocked by the writer.
        with IndexStore.open(folder, embedder.name, embedder.dim) as reader:
            assert reader.search(embedder.encode_query("lighthouse automation"), 1)
    finally:
        writer.close()
    with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as again:
        assert again.stats()["documents"] == 1


def test_missing_index_and_read_only_writes_are_refused(tmp_path: Path, folder: Path, embedder: Embedder) -> None:
    with pytest.raises(StoreError, match="assistant ingest"):
        IndexStore.open(tmp_path / "nowhere", embedder.name, embedder.dim)
    assert IndexStore.read_manifest(tmp_path / "nowhere") == {}
    with IndexStore.open(folder, embedder.name, embedder.dim) as reader:
        with pytest.raises(StoreError, match="read-only"):
            put(reader, embedder, "other", ["Some text."])


def test_uncommitted_changes_vanish_on_close(folder: Path, embedder: Embedder, check_index) -> None:
    generation = int(IndexStore.read_manifest(folder)["generation"])
    store = IndexStore.open(folder, embedder.name, embedder.dim, writable=True)
    put(store, embedder, "draft", ["A draft that is never committed."])
    store.remove_document("island")
    store.close()
    counts = check_index(folder)
    assert counts == {"documents": 1, "chunks": 3, "vectors": 3}
    assert int(IndexStore.read_manifest(folder)["generation"]) == generation


def test_replace_and_remove_keep_faiss_and_sqlite_equal(folder: Path, embedder: Embedder, check_index) -> None:
    with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as store:
        put(store, embedder, "island", TEXTS[:2])  # replace: 3 chunks become 2
        put(store, embedder, "harbour", ["Harbour fees rose in May.", "Fishing boats moor for free."])
        store.commit()
    assert check_index(folder) == {"documents": 2, "chunks": 4, "vectors": 4}
    with IndexStore.open(folder, embedder.name, embedder.dim) as reader:
        hits = reader.search(embedder.encode_query("Which boats moor without paying?"), 1)
        assert reader.chunks([hits[0][0]])[hits[0][0]].text == "Fishing boats moor for free."
        assert all("school" not in c.text for c in reader.iter_chunks())
    with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as store:
        assert store.remove_document("island")
        assert not store.remove_document("island")
        store.commit()
    assert check_index(folder) == {"documents": 1, "chunks": 2, "vectors": 2}


def test_commit_is_atomic_and_leftovers_are_cleaned(folder: Path, embedder: Embedder, check_index) -> None:
    manifest = IndexStore.read_manifest(folder)
    committed = manifest["vectors_file"]
    assert [p.name for p in folder.glob("vectors-*.faiss")] == [committed]
    # What a crash leaves behind: a half-written temp file, and a renamed next generation whose
    # SQLite transaction never committed. Readers keep using the committed pair.
    generation = int(manifest["generation"])
    (folder / f".vectors-{generation + 1:08d}.faiss.tmp").write_bytes(b"half written")
    (folder / f"vectors-{generation + 1:08d}.faiss").write_bytes(b"not committed")
    assert check_index(folder) == {"documents": 1, "chunks": 3, "vectors": 3}
    with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as store:
        assert store.generation == generation
        put(store, embedder, "harbour", ["Harbour fees rose in May."])
        store.commit()
        assert store.generation == generation + 1
    names = sorted(p.name for p in folder.iterdir() if "vectors" in p.name)
    assert names == [f"vectors-{generation + 1:08d}.faiss"]
    assert check_index(folder) == {"documents": 2, "chunks": 4, "vectors": 4}


def test_reader_picks_up_a_new_generation(folder: Path, embedder: Embedder) -> None:
    with IndexStore.open(folder, embedder.name, embedder.dim) as reader:
        seen = reader.generation
        assert not reader.reload_if_changed(seen)
        with IndexStore.open(folder, embedder.name, embedder.dim, writable=True) as store:
            put(store, embedder, "harbour", ["Harbour fees rose in May."])
            store.commit()
        assert reader.reload_if_changed(seen)
        assert reader.vectors.ntotal == 4
