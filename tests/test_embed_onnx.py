"""The ONNX encoders: fp32 (`embed_backend="onnx"`, the default: torch's vectors, torch's indexes) and
int8 (`"onnx-int8"`: built offline, close to fp32, cached, kept apart).

Skips when onnxruntime (or onnx, which the quantizer needs) is not installed. The models are built
once into a temporary cache for this module (about 10 s), never into ~/.cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from assistant import onnx_embed  # noqa: E402
from assistant.embed import Embedder, resolve_model_path, split_backend  # noqa: E402
from assistant.index import IndexStore, ModelMismatchError  # noqa: E402
from assistant.ingest import Ingestor, TextItem  # noqa: E402
from assistant.pipeline import Assistant  # noqa: E402
from assistant.settings import Settings  # noqa: E402

SENTENCES = [
    "The mitochondria is the powerhouse of the cell.",
    "Aspirin lowers the risk of a second heart attack in some patients.",
    "The ferry to the island leaves twice a day in summer.",
    "Interest rates rose for the third time this year, the central bank said.",
    "A short one.",
]

DOCS = [
    "Vaccination against measles gives lifelong immunity in most children.",
    "The central bank raised interest rates to fight inflation.",
    "The lighthouse on the island was automated in 1987.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
    "The football club signed a new striker for the season.",
]
QUERIES = [
    "how do plants make sugar from light",
    "why did borrowing costs go up",
    "who scored for the team",
    "does the measles vaccine protect for life",
    "when did the lighthouse stop needing a keeper",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSISTANT_ONNX_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def embedder(onnx_cache: Path) -> Embedder:
    """The fp32 model (ONNX Runtime), the reference the int8 one is compared with."""
    fp32 = Embedder("all-MiniLM-L6-v2", backend="onnx")
    fp32.encode(["warm up"])
    return fp32


@pytest.fixture(scope="module")
def int8(onnx_cache: Path) -> Embedder:
    before = onnx_embed.builds
    embedder = Embedder("all-MiniLM-L6-v2", backend="onnx-int8")
    assert embedder.dim == 384  # loads (and builds) the model
    assert onnx_embed.builds == before + 1, "a fresh cache must build the model once"
    return embedder


def test_names_carry_the_backend() -> None:
    assert Embedder("all-MiniLM-L6-v2", backend="onnx").name == "all-MiniLM-L6-v2"  # fp32 indexes keep working
    assert Embedder("all-MiniLM-L6-v2", backend="onnx-int8").name == "all-MiniLM-L6-v2+onnx-int8"
    assert split_backend("all-MiniLM-L6-v2+onnx-int8") == ("all-MiniLM-L6-v2", "onnx-int8")
    assert Embedder("all-MiniLM-L6-v2", backend="torch").name == "all-MiniLM-L6-v2"  # fp32 either way
    assert Settings().embed_backend == "onnx-int8" and Embedder().backend == "onnx-int8"  # the default
    with pytest.raises(ValueError, match="embed_backend"):
        Embedder("all-MiniLM-L6-v2", backend="tensorrt")


def test_isa_detection() -> None:
    assert onnx_embed.detect_isa("flags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni\n") == "avx512_vnni"
    assert onnx_embed.detect_isa("flags\t\t: fpu sse avx2 avx512f avx512bw\n") == "avx512"
    assert onnx_embed.detect_isa("flags\t\t: fpu sse avx2\n") == "avx2"
    assert onnx_embed.detect_isa("Features\t: fp asimd\n") == "generic"


def test_int8_is_built_offline_into_the_cache(int8: Embedder, onnx_cache: Path) -> None:
    folder = onnx_cache / f"all-MiniLM-L6-v2-{onnx_embed.detect_isa()}"
    assert int8.model.onnx_path == folder / onnx_embed.MODEL_FILE
    assert folder.name in {p.name for p in onnx_cache.iterdir()}
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(".")]  # no temporary build folders left
    assert sorted(p.name for p in folder.iterdir()) == [onnx_embed.BUILD_FILE, onnx_embed.MODEL_FILE]
    assert int8.max_tokens == 256


def test_int8_vectors_are_unit_length_and_close_to_fp32(int8: Embedder, embedder: Embedder) -> None:
    long_text = " ".join(SENTENCES * 40)  # beyond 256 word pieces: truncated like the torch model
    texts = [*SENTENCES, long_text]
    q = int8.encode(texts)
    f = embedder.encode(texts)
    assert q.shape == f.shape == (len(texts), 384) and q.dtype == np.float32
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)
    cosines = np.sum(q * f, axis=1)
    assert cosines.min() > 0.98, cosines
    # Output order is input order. Unlike fp32, an int8 vector depends a little on its batch mates:
    # dynamic quantization scales activations per tensor, i.e. over the whole padded batch.
    again = int8.encode(texts[::-1], batch_size=2)[::-1]
    assert np.sum(again * q, axis=1).min() > 0.98
    assert float(int8.encode_query(SENTENCES[1]) @ q[1]) > 0.98
    assert np.array_equal(int8.encode(texts), q)  # but the same batch gives the same vectors


def test_int8_ranks_a_small_retrieval_example_like_fp32(int8: Embedder, embedder: Embedder) -> None:
    for model in (embedder, int8):
        scores = model.encode(QUERIES) @ model.encode(DOCS).T
        assert scores.argmax(axis=1).tolist() == [3, 1, 4, 0, 2], model.name
    fp32 = (embedder.encode(QUERIES) @ embedder.encode(DOCS).T).argsort(axis=1)
    quantized = (int8.encode(QUERIES) @ int8.encode(DOCS).T).argsort(axis=1)
    assert (fp32[:, -2:] == quantized[:, -2:]).all()  # best two documents, in order, for every query


def test_second_construction_reuses_the_cached_build(int8: Embedder, onnx_cache: Path) -> None:
    path = int8.model.onnx_path
    mtime = path.stat().st_mtime_ns
    builds = onnx_embed.builds
    other = onnx_embed.OnnxEncoder("all-MiniLM-L6-v2", resolve_model_path("all-MiniLM-L6-v2"), threads=1)
    assert other.onnx_path == path
    assert onnx_embed.builds == builds and path.stat().st_mtime_ns == mtime
    assert np.allclose(other.encode(SENTENCES[:2]), int8.encode(SENTENCES[:2]), atol=1e-4)


def test_index_built_with_torch_refuses_the_int8_backend(int8: Embedder, embedder: Embedder, tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    report = Ingestor(settings, embedder).ingest_texts([TextItem("doc:1", DOCS[0], "Measles")], progress=False)
    assert report.embedded_chunks >= 1
    assert IndexStore.read_manifest(settings.index_dir)["model"] == "all-MiniLM-L6-v2"
    with pytest.raises(ModelMismatchError) as info:
        Assistant(settings.override(embed_backend="onnx-int8"), int8)
    message = str(info.value)
    assert "'all-MiniLM-L6-v2'" in message and "'all-MiniLM-L6-v2+onnx-int8'" in message
    assert "rebuild" in message
    with pytest.raises(ModelMismatchError):
        Ingestor(settings, int8).ingest_texts([TextItem("doc:2", DOCS[1])], progress=False)
    # The backend that built it still opens it.
    Assistant(settings, embedder).store.close()


def _record_widths(encoder: Embedder, texts: list[str], batch_size: int) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """(token counts per model call, vectors with 1 worker, vectors with 3 workers)."""
    model = encoder.model
    widths: list[list[int]] = []
    real_forward = model._forward

    def recording(ids: list[list[int]]) -> np.ndarray:
        widths.append([len(x) for x in ids])
        return real_forward(ids)

    model._forward = recording  # instance attribute: only this test's calls
    saved = model.workers
    try:
        model.workers = 1
        serial = encoder.encode(texts, batch_size=batch_size)
        model.workers = 3
        parallel = encoder.encode(texts, batch_size=batch_size)
    finally:
        model.workers = saved
        del model._forward
    return widths, serial, parallel


VARIED = [" ".join(["word"] * n) + f" {i}" for i, n in enumerate([3, 40, 1, 90, 12, 12, 60, 7, 25])]


def test_fp32_batches_are_sorted_by_token_count_and_workers_do_not_change_vectors(embedder: Embedder) -> None:
    widths, serial, parallel = _record_widths(embedder, VARIED, batch_size=2)
    lengths = sorted((embedder.count_tokens(t) for t in VARIED), reverse=True)
    assert widths[: len(widths) // 2] == [lengths[i : i + 2] for i in range(0, len(VARIED), 2)]  # longest first
    assert sorted(map(tuple, widths[len(widths) // 2 :])) == sorted(map(tuple, widths[: len(widths) // 2]))
    assert np.array_equal(serial, parallel)  # same batches, same vectors, same (input) order


def test_int8_runs_one_text_per_call_so_a_vector_never_depends_on_its_batch(int8: Embedder) -> None:
    """Dynamic quantization scales activations per call: in a shared call a vector would change
    with its batch mates. int8 runs every text alone, whatever batch size the caller asks for."""
    widths, serial, parallel = _record_widths(int8, VARIED, batch_size=4)
    assert all(len(w) == 1 for w in widths) and len(widths) == 2 * len(VARIED)
    assert sorted(w[0] for w in widths[: len(VARIED)]) == sorted(int8.count_tokens(t) for t in VARIED)
    single = np.stack([int8.encode([t])[0] for t in VARIED])
    assert np.array_equal(serial, parallel) and np.array_equal(single, serial)


def test_fp32_onnx_gives_torchs_vectors_and_opens_its_indexes(onnx_cache: Path, embedder: Embedder,
                                                              tmp_path: Path) -> None:
    torch_fp32 = Embedder("all-MiniLM-L6-v2", backend="torch")
    onnx_fp32 = Embedder("all-MiniLM-L6-v2", backend="onnx")
    assert onnx_fp32.model.onnx_path == onnx_cache / "all-MiniLM-L6-v2-fp32" / onnx_embed.MODEL_FILES["fp32"]
    long_text = " ".join(SENTENCES * 40)
    a, b = onnx_fp32.encode([*SENTENCES, long_text]), torch_fp32.encode([*SENTENCES, long_text])
    assert np.sum(a * b, axis=1).min() > 0.99999
    assert np.array_equal(onnx_fp32.encode(SENTENCES, batch_size=2), onnx_fp32.encode(SENTENCES))  # no batch effects
    settings = Settings(index_dir=tmp_path / "index")
    Ingestor(settings, torch_fp32).ingest_texts([TextItem("doc:1", DOCS[3], "Photosynthesis")], progress=False)
    with Assistant(settings.override(embed_backend="onnx"), onnx_fp32) as assistant:
        assert assistant.retriever.run(QUERIES[0]).passages[0].text == DOCS[3]


def test_fp32_onnx_falls_back_to_torch_and_int8_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ImportError("onnxruntime is not installed")

    monkeypatch.setattr(onnx_embed, "OnnxEncoder", broken)
    fallback = Embedder("all-MiniLM-L6-v2", backend="onnx")
    with pytest.warns(RuntimeWarning, match="torch instead of ONNX Runtime"):
        assert fallback.dim == 384
    assert type(fallback.model).__name__ == "SentenceTransformer" and fallback.name == "all-MiniLM-L6-v2"
    with pytest.raises(ImportError, match="onnxruntime"):
        Embedder("all-MiniLM-L6-v2", backend="onnx-int8").encode(["x"])


def test_onnx_path_never_imports_torch(onnx_cache: Path) -> None:
    """Once the model is built, encoding (ingest's and a query's path) loads neither torch nor
    transformers: importing them costs about 2.5 s and 250 MB of RSS per process."""
    import os
    import subprocess
    import sys

    Embedder(backend="onnx").encode(["build the fp32 model into this cache first"])
    code = ("import sys; from assistant.embed import Embedder; e = Embedder(backend='onnx'); "
            "v = e.encode(['a chunk', 'another one']); q = e.encode_query('a question'); "
            "e.encode_units(['one. two.'], [[(0, 4), (5, 9)]]); n = e.count_tokens('a chunk'); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules), n)")
    env = {**os.environ, "ASSISTANT_ONNX_CACHE": str(onnx_cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "4"]


def test_onnx_tokenizer_matches_the_models_fast_tokenizer() -> None:
    """`FastTokenizer` (tokenizer.json read by `tokenizers`) gives the ids and offsets transformers'
    AutoTokenizer gives, on text with accents, CJK, emoji and odd spacing."""
    from transformers import AutoTokenizer

    path = resolve_model_path("all-MiniLM-L6-v2")
    ours = onnx_embed.FastTokenizer(path).backend_tokenizer
    theirs = AutoTokenizer.from_pretrained(str(path)).backend_tokenizer
    theirs.no_padding()
    theirs.no_truncation()
    texts = SENTENCES + DOCS + ["Ünïcode café — naïve ‘quotes’ 日本語 😀", "", "  lots   of   space  ", "x " * 400]
    for text in texts:
        a, b = ours.encode(text), theirs.encode(text)
        assert (a.ids, a.offsets) == (b.ids, b.offsets), text


def test_an_index_opens_with_the_precision_it_was_built_with(int8: Embedder, embedder: Embedder,
                                                             tmp_path: Path) -> None:
    """`embed_backend` picks the precision of a new index; an existing one keeps its own, so a
    changed default never locks anyone out of an index they built before."""
    from assistant.index import index_backend

    fp32 = Settings(index_dir=tmp_path / "fp32", embed_backend="onnx")
    Ingestor(fp32, embedder).ingest_texts([TextItem("doc:1", DOCS[0], "Measles")], progress=False)
    assert index_backend(fp32.override(embed_backend="onnx-int8")) == "onnx"
    assert index_backend(fp32.override(embed_backend="torch")) == "torch"
    opened = Assistant(fp32.override(embed_backend="onnx-int8"))  # builds its own embedder
    try:
        assert opened.embedder.name == "all-MiniLM-L6-v2"
        assert opened.search(QUERIES[3]).passages[0].text == DOCS[0]
    finally:
        opened.store.close()
    quantized = Settings(index_dir=tmp_path / "int8", embed_backend="onnx-int8")
    Ingestor(quantized, int8).ingest_texts([TextItem("doc:1", DOCS[0], "Measles")], progress=False)
    assert index_backend(quantized.override(embed_backend="onnx")) == "onnx-int8"
    assert index_backend(Settings(index_dir=tmp_path / "new", embed_backend="onnx")) == "onnx"  # no index yet
