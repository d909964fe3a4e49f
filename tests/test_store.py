"""The index folder: model manifest, one writer at a time, atomic commits, FAISS == SQLite; large\nindexes: exact vectors on disk, the HNSW graph and BM25 built from slices and streams."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bm25s
import faiss
import numpy as np
import pytest

from assistant.embed import Embedder
from assistant.index import DocumentRecord, IndexLockedError, IndexStore, ModelMismatchError, StoreError, bm25_build
from assistant.index import vectors as store_module
from assistant.index.flatfile import DiskVectors, FlatFileError, FlatFileWriter, iter_flat_file, read_layout
from assistant.index.vectors import build_ann
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


# -- large indexes: exact vectors on disk, ANN and BM25 built in slices / streamed -------------

DIM = 16


def unit_vectors(seed: int, n: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def put_vectors(store: IndexStore, doc: str, vectors: np.ndarray) -> list[int]:
    rows = [(i, i * 10, i * 10 + 9, 3, f"{doc} passage {i} word{i % 7}") for i in range(len(vectors))]
    store.put_document(DocumentRecord(doc, f"/x/{doc}.txt", doc, "h-" + doc, 1, len(rows), time.time()), rows, vectors)
    return [r[0] for r in store.db.execute("SELECT id FROM chunks WHERE doc_id = ? ORDER BY ord", (doc,))]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """HNSW graphs built with one thread are deterministic, so two builds can be compared byte for byte."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def small_on_disk(monkeypatch: pytest.MonkeyPatch, vectors: int = 40) -> None:
    """Writers keep exact vectors on disk past `vectors` vectors of DIM floats."""
    monkeypatch.setattr(IndexStore, "max_memory_vector_bytes", vectors * DIM * 4)


def test_flat_file_is_what_faiss_writes(tmp_path: Path) -> None:
    vectors, ids = unit_vectors(1, 25), np.arange(25, dtype=np.int64) * 3 + 1
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    index.add_with_ids(vectors, ids)
    writer = FlatFileWriter(tmp_path / "v.faiss", DIM)
    for start in range(0, 25, 10):
        writer.append(vectors[start : start + 10], ids[start : start + 10])
    writer.finish()
    assert (tmp_path / "v.faiss").read_bytes() == faiss.serialize_index(index).tobytes()
    assert read_layout(tmp_path / "v.faiss").ntotal == 25
    slices = list(iter_flat_file(tmp_path / "v.faiss", rows=7))
    assert [len(v) for v, _ in slices] == [7, 7, 7, 4]
    assert np.array_equal(np.concatenate([v for v, _ in slices]), vectors)
    assert np.array_equal(np.concatenate([i for _, i in slices]), ids)
    (tmp_path / "bad.faiss").write_bytes(b"IxM2 not really")
    with pytest.raises(FlatFileError):
        read_layout(tmp_path / "bad.faiss")


def run_history(folder: Path, settings: Settings) -> dict[str, object]:
    """The same writes (adds, a replacement, a removal, three commits) and what a reader then sees."""
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as store:
        put_vectors(store, "a", unit_vectors(2, 40))
        store.commit()
        ids_b = put_vectors(store, "b", unit_vectors(3, 60))  # passes 40 vectors mid-transaction: moved to disk
        assert np.array_equal(store.vectors_of(ids_b[-2:]), unit_vectors(3, 60)[-2:])  # not committed yet
        put_vectors(store, "a", unit_vectors(4, 30))  # replaces a: committed rows removed
        mid = [store.search(q, 5) for q in unit_vectors(9, 5)]  # a writer sees its uncommitted changes
        store.commit()
        put_vectors(store, "c", unit_vectors(5, 20))
        store.remove_document("b")
        store.commit()
        kept_ids = [r[0] for r in store.db.execute("SELECT id FROM chunks ORDER BY id")]
        vectors_of = store.vectors_of(kept_ids[:3] + kept_ids[-3:])
    with IndexStore.open(folder, "m", DIM, settings=settings) as reader:
        found = [reader.search(q, 5) for q in unit_vectors(9, 5)]
        meta = IndexStore.read_manifest(folder)
        files = {key: (folder / meta[key]).read_bytes() for key in ("vectors_file", "ann_file") if meta[key]}
        return {"mid": mid, "found": found, "vectors_of": vectors_of, "files": files, "n": reader.vectors.ntotal}


@pytest.mark.parametrize("index_type", ["flat", "hnsw_sq8"])
def test_vectors_on_disk_give_the_same_index_as_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           index_type: str, one_thread: None) -> None:
    settings = Settings(index_dir=tmp_path, index_type=index_type, hnsw_m=8)
    in_memory = run_history(tmp_path / "memory", settings)
    small_on_disk(monkeypatch)
    on_disk = run_history(tmp_path / "disk", settings)
    assert on_disk["n"] == in_memory["n"] == 50
    assert on_disk["found"] == in_memory["found"]
    for got, want in zip(on_disk["mid"], in_memory["mid"], strict=True):  # type: ignore[call-overload]
        assert [i for i, _ in got] == [i for i, _ in want]  # a scan on disk, FAISS in memory: scores to rounding
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)
    assert np.array_equal(on_disk["vectors_of"], in_memory["vectors_of"])  # type: ignore[arg-type]
    assert on_disk["files"] == in_memory["files"]  # byte for byte: exact vectors and HNSW graph
    with IndexStore.open(tmp_path / "disk", "m", DIM, writable=True, settings=settings) as store:
        assert isinstance(store.vectors, DiskVectors)
        with pytest.raises(KeyError):
            store.vectors_of([10**9])
    names = {p.name for p in (tmp_path / "disk").iterdir()}
    assert not [n for n in names if n.endswith(".tmp")]  # the spill file never had a name


def test_store_ann_built_in_slices_equals_build_ann_on_all_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    one_thread: None) -> None:
    small_on_disk(monkeypatch)
    settings = Settings(index_dir=tmp_path / "i", approx_threshold=100, hnsw_m=8)  # auto: hnsw_sq8 past 100
    vectors = unit_vectors(6, 240)
    with IndexStore.open(tmp_path / "i", "m", DIM, writable=True, settings=settings) as store:
        ids = put_vectors(store, "a", vectors[:120]) + put_vectors(store, "b", vectors[120:])
        store.commit()
        assert store.ann_kind == "hnsw_sq8" and store._ann_mapped
    whole = build_ann(vectors, np.asarray(ids, dtype=np.int64), "hnsw_sq8", 8, settings.hnsw_ef_construction)
    store_module.set_ef_search(whole, settings.hnsw_ef_search)
    ann_file = tmp_path / "i" / IndexStore.read_manifest(tmp_path / "i")["ann_file"]
    assert ann_file.read_bytes() == faiss.serialize_index(whole).tobytes()
    # The training sample picked from slices is the one the whole array gives.
    many = unit_vectors(7, 1000)
    monkeypatch.setattr(store_module, "ANN_TRAIN_SAMPLE", 100)
    slices = [(many[s : s + 37], np.arange(s, min(s + 37, 1000))) for s in range(0, 1000, 37)]
    wanted = many[np.sort(np.random.default_rng(0).choice(1000, 100, replace=False))]
    assert np.array_equal(store_module._training_sample(slices, 1000), wanted)


def reader_counts(folder: Path, settings: Settings) -> tuple[int, int, int]:
    """(documents, chunk rows, vectors) a reader sees; each stored vector finds itself first."""
    with IndexStore.open(folder, "m", DIM, settings=settings) as reader:
        ids = [r[0] for r in reader.db.execute("SELECT id FROM chunks")]
        for chunk_id in ids[:: max(1, len(ids) // 5)]:
            assert reader.search(reader.vectors_of([chunk_id])[0], 1)[0][0] == chunk_id
        return len(reader.documents()), len(ids), int(reader.vectors.ntotal)


def test_crash_during_a_large_commit_leaves_the_last_good_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_on_disk(monkeypatch)
    folder = tmp_path / "i"
    settings = Settings(index_dir=folder, index_type="hnsw", hnsw_m=8)
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as store:
        put_vectors(store, "a", unit_vectors(8, 80))
        store.commit()
    before = IndexStore.read_manifest(folder)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # after the vectors file and BM25 of the next generation are written

    store = IndexStore.open(folder, "m", DIM, writable=True, settings=settings)
    assert isinstance(store.vectors, DiskVectors)
    put_vectors(store, "b", unit_vectors(9, 30))
    monkeypatch.setattr(store, "_commit_ann", crash)
    with pytest.raises(KeyboardInterrupt):
        store.commit()
    assert (folder / f"vectors-{int(before['generation']) + 1:08d}.faiss").exists()  # renamed, not recorded
    assert IndexStore.read_manifest(folder) == before
    assert reader_counts(folder, settings) == (1, 80, 80)
    store.close()
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as again:  # removes the leftovers
        assert again.vectors.ntotal == 80 and again.generation == int(before["generation"])
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(("vectors", "ann", "bm25", "."))) == \
        sorted([before["vectors_file"], before["ann_file"], before["bm25_dir"]])


def test_streamed_bm25_equals_bm25s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bm25_build, "BATCH_CHUNKS", 100)  # many batches and column blocks
    monkeypatch.setattr(bm25_build, "BLOCK_ENTRIES", 500)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    corpus = [[words[min(int(z), 299)] for z in rng.zipf(1.3, rng.integers(0, 30))] for _ in range(2000)]
    assert any(not terms for terms in corpus)  # empty chunks are indexed as [""]
    bm25_build.build_bm25(corpus, 0.9, 0.4, tmp_path / "streamed")
    reference = bm25s.BM25(k1=0.9, b=0.4)
    reference.index([t or [""] for t in corpus], show_progress=False)
    reference.save(str(tmp_path / "reference"), show_progress=False)
    mine = bm25s.BM25.load(str(tmp_path / "streamed"), mmap=True, show_progress=False)
    theirs = bm25s.BM25.load(str(tmp_path / "reference"), show_progress=False)
    assert set(mine.vocab_dict) == set(theirs.vocab_dict)

    def column(model: bm25s.BM25, token: str) -> tuple[np.ndarray, np.ndarray]:
        i = model.vocab_dict[token]
        span = slice(model.scores["indptr"][i], model.scores["indptr"][i + 1])
        return np.asarray(model.scores["indices"][span]), np.asarray(model.scores["data"][span])

    for token in theirs.vocab_dict:
        if token:
            assert all(np.array_equal(a, b) for a, b in zip(column(mine, token), column(theirs, token), strict=True))
    for query in (["w1", "w5"], ["w40"], ["w2", "w100", "w7"]):
        got, want = mine.retrieve([query], k=10, show_progress=False), theirs.retrieve([query], k=10, show_progress=False)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert (tmp_path / "streamed" / "params.index.json").read_text() == \
        (tmp_path / "reference" / "params.index.json").read_text()
