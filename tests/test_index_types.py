"""Index types chosen by size (flat, then HNSW past a threshold) and the BM25 saved per generation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from assistant.embed import Embedder
from assistant.index import DocumentRecord, IndexStore, StoreError
from assistant.index.local_commit import resolve_index_type
from assistant.ingest import Ingestor, TextItem
from assistant.retrieve import HybridRetriever
from assistant.settings import Settings

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def put(store: IndexStore, doc: str, vectors: np.ndarray) -> list[int]:
    rows = [(i, i * 10, i * 10 + 9, 3, f"{doc} passage {i} words") for i in range(len(vectors))]
    store.put_document(DocumentRecord(doc, f"/x/{doc}.txt", doc, "h-" + doc, 1, len(rows), time.time()), rows, vectors)
    return [r[0] for r in store.db.execute("SELECT id FROM chunks WHERE doc_id = ? ORDER BY ord", (doc,))]


def exact_top(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(vectors @ query))[:k]
    return [ids[i] for i in order]


def test_resolve_index_type() -> None:
    assert resolve_index_type("auto", 99, 100) == "flat"
    assert resolve_index_type("auto", 100, 100) == "hnsw_sq8"
    assert resolve_index_type("hnsw", 1, 100) == "hnsw"
    with pytest.raises(StoreError, match="unknown index_type"):
        resolve_index_type("ivf", 1, 100)


def test_small_index_stays_flat(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "i", approx_threshold=100)
    rng = np.random.default_rng(1)
    with IndexStore.open(tmp_path / "i", "m", DIM, writable=True, settings=settings) as store:
        put(store, "a", unit(rng, 40))
        store.commit()
    assert IndexStore.read_manifest(tmp_path / "i")["ann_file"] == ""
    assert not list((tmp_path / "i").glob("ann-*"))
    with IndexStore.open(tmp_path / "i", "m", DIM, settings=settings) as reader:
        assert reader.ann is None and reader.ann_kind == "flat"


@pytest.mark.parametrize("kind", ["auto", "hnsw"])
def test_past_the_threshold_search_is_approximate_and_still_right(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "i"
    settings = Settings(index_dir=folder, index_type=kind, approx_threshold=100, hnsw_m=16)
    rng = np.random.default_rng(2)
    first, second = unit(rng, 150), unit(rng, 60)
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as store:
        ids_a = put(store, "a", first)
        store.commit()
        expected_kind = "hnsw_sq8" if kind == "auto" else "hnsw"
        assert store.ann is not None and store.ann_kind == expected_kind
        ids_b = put(store, "b", second)  # added to the existing graph at commit
        store.commit()
        assert store.ann.ntotal == 210
    manifest = IndexStore.read_manifest(folder)
    assert manifest["ann_kind"] == expected_kind and (folder / manifest["ann_file"]).exists()
    assert len(list(folder.glob("ann-*.faiss"))) == 1  # the previous generation's graph is gone
    vectors, ids = np.concatenate([first, second]), ids_a + ids_b
    with IndexStore.open(folder, "m", DIM, settings=settings) as reader:
        assert reader.ann is not None
        hits = 0
        for q in unit(rng, 20):
            found = [i for i, _ in reader.search(q, 10)]
            hits += len(set(found) & set(exact_top(vectors, ids, q, 10)))
        assert hits / 200 >= 0.9
        for i in (0, 149, 150, 209):  # a stored vector finds itself first, with cosine ~1
            (top, score), *_ = reader.search(vectors[i], 3)
            assert top == ids[i] and score > 0.97
    # Removing a document rebuilds the graph without it (auto: 60 vectors are back under the threshold).
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as store:
        store.remove_document("a")
        store.commit()
        if kind == "auto":
            assert store.ann is None and IndexStore.read_manifest(folder)["ann_file"] == ""
        else:
            assert store.ann is not None and store.ann.ntotal == 60
    with IndexStore.open(folder, "m", DIM, settings=settings) as reader:
        found = {i for q in vectors[:150] for i, _ in reader.search(q, 5)}
        assert found <= set(ids_b)


def test_uncommitted_generation_files_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    settings = Settings(index_dir=folder, index_type="hnsw", hnsw_m=8)
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings) as store:
        put(store, "a", unit(np.random.default_rng(3), 20))
        store.commit()
    manifest = IndexStore.read_manifest(folder)
    (folder / "ann-00000009.faiss").write_bytes(b"never committed")
    (folder / ".bm25-00000009.tmp").mkdir()
    (folder / "bm25-00000009").mkdir()
    with IndexStore.open(folder, "m", DIM, writable=True, settings=settings):
        pass
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith(("ann", "bm25", ".bm25")))
    assert names == sorted([manifest["ann_file"], manifest["bm25_dir"]])


@pytest.fixture
def corpus_settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index")


TEXTS = [
    TextItem("mem:lighthouse", "Skarv lighthouse\n\nThe lighthouse on Skarv island was automated in 1987.", "Skarv lighthouse"),
    TextItem("mem:ferry", "Ferries\n\nFerries to the island leave twice a day in summer and once in winter.", "Ferries"),
    TextItem("mem:school", "School\n\nThe island school closed when the last family moved away in 2003.", "School"),
]


def test_bm25_is_saved_per_generation_and_loaded_not_rebuilt(corpus_settings: Settings, embedder: Embedder) -> None:
    folder = corpus_settings.index_dir
    Ingestor(corpus_settings, embedder).ingest_texts(TEXTS[:2], progress=False)
    manifest = IndexStore.read_manifest(folder)
    assert manifest["bm25_dir"] and (folder / manifest["bm25_dir"] / "chunk_ids.npy").exists()
    with IndexStore.open(folder, embedder.name, embedder.dim, settings=corpus_settings) as store:
        retriever = HybridRetriever(store, embedder, corpus_settings)
        loaded = retriever.lexical()
        assert loaded.source == "loaded"
        result = retriever.run("When was the lighthouse automated?", top_k=2, mode="bm25")
        assert result.passages[0].source == "mem:lighthouse"
        # The same settings built in memory give the same scores and corpus statistics.
        built = HybridRetriever(store, embedder, corpus_settings)
        corpus = store.keyword_corpus(corpus_settings.bm25_title_weight)
        built.use_keyword_index(corpus.bm25(corpus_settings.bm25_k1, corpus_settings.bm25_b))
        again = built.run("When was the lighthouse automated?", top_k=2, mode="bm25")
        assert [p.chunk_id for p in again.passages] == [p.chunk_id for p in result.passages]
        assert [p.bm25_score for p in again.passages] == pytest.approx([p.bm25_score for p in result.passages])
        assert dict(built.stats.df) == dict(loaded.stats.df) and built.stats.n_docs == loaded.stats.n_docs
        # Other BM25 parameters than the saved ones: built in memory from the stored terms.
        other = HybridRetriever(store, embedder, corpus_settings.override(bm25_k1=corpus_settings.bm25_k1 + 0.6))
        assert other.lexical().source == "built"
        # A newer generation is picked up: its BM25 is loaded and the old folder is gone.
        Ingestor(corpus_settings, embedder).ingest_texts(TEXTS, progress=False)
        newer = IndexStore.read_manifest(folder)["bm25_dir"]
        assert newer != manifest["bm25_dir"] and not (folder / manifest["bm25_dir"]).exists()
        result = retriever.run("When did the island school close?", top_k=1, mode="bm25")
        assert retriever.lexical().source == "loaded" and result.passages[0].source == "mem:school"
        hybrid = retriever.run("When did the island school close?", top_k=3)
        assert hybrid.passages[0].source == "mem:school" and len(hybrid.passages) == 3
