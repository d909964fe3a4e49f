"""Per-unit (sentence) vectors: pooled from the chunk's own forward pass at ingest, stored with their
spans in both stores (the local folder and PostgreSQL), read back by `unit_vectors`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import fresh_postgres_url

from assistant.chunk import embedding_text
from assistant.embed import Embedder
from assistant.index import open_store
from assistant.index.pg_schema import migrate
from assistant.ingest import Ingestor, TextItem, document_id
from assistant.settings import Settings
from assistant.units import split_units

THREE = ("Sea otters hold hands while they sleep so they do not drift apart. "
         "The harbour pier of Vessa is 420 metres long and was built in 1954. "
         "Sourdough bread needs a starter made of flour and water.")
PARAPHRASES = ["Do otters keep hold of each other's paws when sleeping?", "How long is the pier in the harbour?",
               "What do you need to make a sourdough starter?"]

DOCS = {
    "otters": ("Otters", "Sea otters live along the coasts of the North Pacific. They eat sea urchins, crabs and clams. "
               "An otter uses a stone to crack open shells. Sea otters hold hands while sleeping. "
               "Their fur is the densest of any animal, with up to a million hairs per square centimetre. "
               "Unlike other marine mammals they have no blubber. Otters groom their fur for hours every day. "
               "A group of otters resting in the water is called a raft."),
    "harbour": ("Vessa harbour", "The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier. "
                "The new pier is 420 metres long. It was designed by the engineer Tove Rask. "
                "Fishing boats land their catch at the north quay every morning. "
                "A lighthouse at the end of the breakwater has guided ships since 1871."),
}


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    embedder = Embedder("all-MiniLM-L6-v2", "torch")
    embedder.encode(["warm up"])
    return embedder


def spans_of(text: str) -> list[tuple[int, int]]:
    return [(u.start, u.end) for u in split_units(text, 0)]


def texts_and_spans() -> tuple[list[str], list[list[tuple[int, int]]]]:
    long = " ".join(f"Sentence number {i} says that item {i} weighs {i * 3} grams." for i in range(60))  # > 256 pieces
    texts = [THREE, "One sentence only.", long, "   Leading blanks. Then more.", THREE.upper()]
    return texts, [spans_of(t) for t in texts]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_chunk_vectors_equal_encode_and_units_are_unit_length(backend: str, embedder: Embedder,
                                                              request: pytest.FixtureRequest) -> None:
    model: Embedder = embedder if backend == "onnx" else request.getfixturevalue("torch_embedder")
    texts, spans = texts_and_spans()
    vectors, units = model.encode_units(texts, spans, batch_size=2)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), model.dim)
    assert float(np.abs(vectors - model.encode(texts)).max()) < 1e-5
    assert [u.shape for u in units] == [(len(s), model.dim) for s in spans]
    for u in units:
        assert u.dtype == np.float32
        assert np.allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-5)
    # Past the 256-word-piece truncation (the long text's last sentences): the chunk vector.
    long_units = units[2]
    assert np.array_equal(long_units[-1], vectors[2]) and not np.allclose(long_units[0], vectors[2], atol=1e-3)
    # A span without a token, and one past the end of the text: the chunk vector too.
    _v, odd = model.encode_units([THREE], [[(0, 0), (5000, 5010), (0, 10)]])
    assert np.array_equal(odd[0][0], _v[0]) and np.array_equal(odd[0][1], _v[0])
    assert not np.allclose(odd[0][2], _v[0], atol=1e-3)
    assert model.encode_units([], [])[1] == [] and model.encode_units([], [])[0].shape == (0, model.dim)


def test_onnx_and_torch_unit_vectors_agree(torch_embedder: Embedder) -> None:
    """fp32 in ONNX Runtime and in torch: the same units (int8, the default, is close, not equal)."""
    texts, spans = texts_and_spans()
    _a, onnx_units = Embedder("all-MiniLM-L6-v2", "onnx").encode_units(texts, spans)
    _b, torch_units = torch_embedder.encode_units(texts, spans)
    for x, y in zip(onnx_units, torch_units, strict=True):
        assert float(np.min(np.sum(x * y, axis=1))) > 0.9999


def test_a_unit_vector_is_closest_to_a_paraphrase_of_its_unit(embedder: Embedder) -> None:
    spans = spans_of(THREE)
    assert len(spans) == 3
    _vectors, units = embedder.encode_units([THREE], [spans])
    scores = embedder.encode(PARAPHRASES) @ units[0].T  # (query, unit)
    assert list(scores.argmax(axis=1)) == [0, 1, 2], scores
    for q in range(3):
        others = [scores[q, j] for j in range(3) if j != q]
        assert scores[q, q] > max(others) + 0.1


def test_unit_vectors_for_one_text_is_cached(embedder: Embedder) -> None:
    spans = spans_of(THREE)
    first = embedder.unit_vectors_for(THREE, spans)
    assert np.allclose(first, embedder.encode_units([THREE], [spans])[1][0], atol=1e-6)
    assert embedder.unit_vectors_for(THREE, list(spans)) is first  # same key: from the cache
    assert embedder.unit_vectors_for(THREE, spans[:1]).shape == (1, embedder.dim)


def test_an_encoder_that_replaces_encode_alone_stores_no_units(embedder: Embedder) -> None:
    class Wrapped(Embedder):
        def encode(self, texts: Any, batch_size: int = 32, progress: bool = False) -> np.ndarray:
            return super().encode(texts, batch_size, progress)

    assert embedder.supports_units
    assert not Wrapped().supports_units


# -- stores --------------------------------------------------------------------------------


@pytest.fixture(params=["local", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(kind: str, tmp_path: Path, **overrides: Any) -> Settings:
    store = fresh_postgres_url() if kind == "postgres" else ""
    return Settings(index_dir=tmp_path / "index", store=store, chunk_tokens=40, chunk_overlap=8, **overrides)


def unit_rows(store: Any) -> tuple[set[int], set[int]]:
    """(chunk ids that have unit rows, chunk ids of all chunks), straight from the tables."""
    if hasattr(store, "db"):
        have = {r[0] for r in store.db.execute("SELECT chunk_id FROM chunk_units")}
        chunks = {r[0] for r in store.db.execute("SELECT id FROM chunks")}
    else:
        have = {r[0] for r in store._rows("SELECT chunk_id FROM assistant_chunk_units")}
        chunks = {r[0] for r in store._rows("SELECT id FROM assistant_chunks")}
    return have, chunks


def delete_unit_rows(store: Any, ids: list[int]) -> None:
    if hasattr(store, "db"):
        store.db.execute(f"DELETE FROM chunk_units WHERE chunk_id IN ({','.join('?' * len(ids))})", ids)
    else:
        store.conn.execute("DELETE FROM assistant_chunk_units WHERE chunk_id = ANY(%s)", (ids,))


def ingest(settings: Settings, embedder: Embedder, docs: dict[str, tuple[str, str]]) -> None:
    items = [TextItem(f"mem:{key}", text, title) for key, (title, text) in docs.items()]
    report = Ingestor(settings, embedder).ingest_texts(items, progress=False)
    assert not report.failed, report.summary()


def check_units(store: Any, embedder: Embedder, context: str = "none") -> int:
    """Every chunk has units whose spans are split_units(chunk.text, chunk.start) and whose vectors
    are those of encode_units on the chunk's embedded text; returns the number of units."""
    chunks = list(store.iter_chunks())
    assert chunks
    found = store.unit_vectors([c.id for c in chunks])
    assert set(found) == {c.id for c in chunks}
    total = 0
    for c in chunks:
        spans, vectors = found[c.id]
        units = split_units(c.text, c.start)
        assert spans.dtype == np.int32 and spans.shape == (len(units), 2)
        assert [tuple(s) for s in spans.tolist()] == [(u.start, u.end) for u in units]
        for (start, end), u in zip(spans.tolist(), units, strict=True):
            assert c.text[start - c.start : end - c.start] == u.text  # document_text[start:end] == unit text
        assert vectors.dtype == np.float32 and vectors.shape == (len(units), embedder.dim)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        text = embedding_text(c.title, c.text, context)
        shift = len(text) - len(c.text) - c.start
        _v, fresh = embedder.encode_units([text], [[(a + shift, b + shift) for a, b in spans.tolist()]])
        assert float(np.min(np.sum(fresh[0] * vectors, axis=1))) > 0.999  # float16 storage: cosine error < 1e-3
        total += len(units)
    return total


def test_ingest_stores_unit_spans_and_vectors(store_kind: str, tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(store_kind, tmp_path)
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim) as store:
        assert check_units(store, embedder) > len(list(store.iter_chunks()))  # several units per chunk
        assert store.unit_vectors([]) == {} and store.unit_vectors([10**9]) == {}
        ids = [c.id for c in store.iter_chunks()][:8]
        store.unit_vectors(ids)
        started = time.perf_counter()
        for _ in range(20):
            store.unit_vectors(ids)
        per_call = (time.perf_counter() - started) / 20
        assert per_call < (0.005 if store_kind == "local" else 0.05), per_call


def test_replace_and_remove_leave_no_orphan_unit_rows(store_kind: str, tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings(store_kind, tmp_path)
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim) as store:
        old_ids = {c.id for c in store.document_chunks(store.document_by_source("mem:otters").id)}
    changed = dict(DOCS, otters=("Otters", "River otters live in rivers and lakes. They are good swimmers."))
    ingest(settings, embedder, changed)
    with open_store(settings, embedder.name, embedder.dim) as store:
        have, chunks = unit_rows(store)
        assert have == chunks and not (have & old_ids)
        check_units(store, embedder)
    report = Ingestor(settings, embedder).remove([document_id("mem:harbour")])
    assert report.count("removed") == 1
    with open_store(settings, embedder.name, embedder.dim) as store:
        have, chunks = unit_rows(store)
        assert have == chunks and len(store.documents()) == 1


def test_an_index_without_units_returns_nothing_for_those_chunks(store_kind: str, tmp_path: Path,
                                                                 embedder: Embedder) -> None:
    settings = make_settings(store_kind, tmp_path)
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim, writable=True) as store:
        ids = [c.id for c in store.iter_chunks()]
        delete_unit_rows(store, ids[:2])  # as if these chunks were ingested before units existed
        store.commit()
    with open_store(settings, embedder.name, embedder.dim) as store:
        assert store.unit_vectors(ids[:2]) == {}
        assert set(store.unit_vectors(ids)) == set(ids[2:])


def test_a_local_index_from_before_units_opens_and_upgrades(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings("local", tmp_path)
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim, writable=True) as store:
        store.db.execute("DROP TABLE chunk_units")  # an index made before this feature
    with open_store(settings, embedder.name, embedder.dim) as store:  # a reader does not change it
        assert store.unit_vectors([c.id for c in store.iter_chunks()]) == {}
    ingest(settings, embedder, dict(DOCS, harbour=("Vessa harbour", "The pier is long. It is old.")))
    with open_store(settings, embedder.name, embedder.dim) as store:  # the writer added the table
        harbour = store.document_by_source("mem:harbour")
        ids = [c.id for c in store.iter_chunks()]
        found = store.unit_vectors(ids)
        assert set(found) == {c.id for c in store.document_chunks(harbour.id)}


def test_postgres_migrate_adds_the_units_table_in_place(tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings("postgres", tmp_path)
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim, writable=True) as store:
        store.conn.execute("DROP TABLE assistant_chunk_units")  # a database from before this feature
    with open_store(settings, embedder.name, embedder.dim) as store:
        assert store.unit_vectors([c.id for c in store.iter_chunks()]) == {}
    migrate(settings.store, embedder.name, embedder.dim)
    migrate(settings.store, embedder.name, embedder.dim)  # idempotent
    with open_store(settings, embedder.name, embedder.dim) as store:
        assert store.unit_vectors([c.id for c in store.iter_chunks()]) == {}
    ingest(settings, embedder, dict(DOCS, harbour=("Vessa harbour", "The pier is long. It is old.")))
    with open_store(settings, embedder.name, embedder.dim) as store:
        harbour = store.document_by_source("mem:harbour")
        assert set(store.unit_vectors([c.id for c in store.iter_chunks()])) == {
            c.id for c in store.document_chunks(harbour.id)}


def test_title_context_spans_point_at_the_chunks_own_text(store_kind: str, tmp_path: Path,
                                                          embedder: Embedder) -> None:
    settings = make_settings(store_kind, tmp_path, embed_context="title")
    ingest(settings, embedder, DOCS)
    with open_store(settings, embedder.name, embedder.dim) as store:
        chunks = list(store.iter_chunks())
        prefixed = [c for c in chunks if embedding_text(c.title, c.text, "title") != c.text]
        assert prefixed, "no chunk got its title in front"
        check_units(store, embedder, context="title")  # spans, texts and vectors of the shifted spans
        # Unshifted spans (pointing into the title) would give other vectors.
        c = prefixed[0]
        spans, vectors = store.unit_vectors([c.id])[c.id]
        text = embedding_text(c.title, c.text, "title")
        _v, wrong = embedder.encode_units([text], [[(a - c.start, b - c.start) for a, b in spans.tolist()]])
        assert float(np.min(np.sum(wrong[0] * vectors, axis=1))) < 0.99
