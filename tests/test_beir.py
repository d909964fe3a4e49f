"""BEIR reader, IR metrics with hand-computed values, the embedding cache and the bench command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support import shared_embedder

from assistant.evaluation.beir import BeirFormatError, evaluate_rankings, load_beir, ndcg_at_k, recall_at_k
from assistant.settings import Settings

CORPUS = [
    {"_id": "d1", "title": "Lighthouses", "text": "The Skarv lighthouse was automated in 1987 and its keeper left."},
    {"_id": "d2", "title": "Ferries", "text": "Ferries to Skarv island leave twice a day during the summer season."},
    {"_id": "d3", "title": "Schools", "text": "The island school closed when the last family with children moved away."},
    {"_id": "d4", "title": "Birds", "text": "Puffins nest on the northern cliffs from April until August every year."},
]
QUERIES = [
    {"_id": "q1", "text": "When was the lighthouse automated?"},
    {"_id": "q2", "text": "How often do ferries sail to the island?"},
    {"_id": "q3", "text": "Where do puffins nest?"},
    {"_id": "q9", "text": "A query judged in no split."},
]


def write_beir(folder: Path, header: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels").mkdir(exist_ok=True)
    rows = ["q1\td1\t1", "q2\td2\t1", "q3\td4\t1"]
    (folder / "qrels" / "test.tsv").write_text(("query-id\tcorpus-id\tscore\n" if header else "") + "\n".join(rows) + "\n")
    (folder / "qrels" / "train.tsv").write_text("q1\td1\t1\nq2\td2\t1\n")
    return folder


def test_reader_keeps_judged_queries_and_titles(tmp_path: Path) -> None:
    data = load_beir(write_beir(tmp_path / "tiny"), "test")
    assert data.name == "tiny"
    assert set(data.corpus) == {"d1", "d2", "d3", "d4"}
    assert data.corpus["d1"].full_text.startswith("Lighthouses\n\nThe Skarv")
    assert set(data.queries) == {"q1", "q2", "q3"}  # q9 is judged nowhere
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d4": 1}}
    assert load_beir(write_beir(tmp_path / "plain", header=False), "test").qrels == data.qrels


def test_reader_errors_name_the_problem(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError, match="splits here: test, train"):
        load_beir(folder, "dev")
    (folder / "qrels" / "test.tsv").write_text("q7\td1\t1\n")
    with pytest.raises(BeirFormatError, match="not in"):
        load_beir(folder, "test")


def test_metrics_match_hand_computed_values() -> None:
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 2, "d4": 1}, "q3": {"d9": 0}}
    rankings = {"q1": ["d3", "d2", "d1"], "q2": ["d4", "d2"]}
    # q1: DCG = 1/log2(2) + 0 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3).
    q1 = 1.5 / (1 + 1 / math.log2(3))
    # q2: DCG = 1/log2(2) + 2/log2(3); ideal = 2/log2(2) + 1/log2(3).
    q2 = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(rankings["q1"], qrels["q1"], 10) == pytest.approx(q1)
    assert ndcg_at_k(rankings["q2"], qrels["q2"], 10) == pytest.approx(q2)
    assert q1 == pytest.approx(0.919721, abs=1e-6) and q2 == pytest.approx(0.859719, abs=1e-6)
    # Cut-off: at k=1 q1 has d3 (relevant) on top, ideal also 1 -> 1.0; q2 has d4 (grade 1) vs ideal 2.
    assert ndcg_at_k(rankings["q1"], qrels["q1"], 1) == pytest.approx(1.0)
    assert ndcg_at_k(rankings["q2"], qrels["q2"], 1) == pytest.approx(0.5)
    assert recall_at_k(rankings["q1"], qrels["q1"], 2) == pytest.approx(0.5)
    assert recall_at_k(rankings["q1"], qrels["q1"], 3) == pytest.approx(1.0)
    # q3 has no relevant document: it is not averaged in; a judged query without results scores 0.
    scores = evaluate_rankings(rankings, qrels, ks=(1, 10))
    assert scores["ndcg@10"] == pytest.approx((q1 + q2) / 2)
    assert scores["recall@1"] == pytest.approx(0.5)
    assert evaluate_rankings({"q1": rankings["q1"]}, qrels, ks=(10,))["ndcg@10"] == pytest.approx(q1 / 2)


def test_embedding_cache_returns_identical_vectors_without_the_model(tmp_path: Path) -> None:
    from assistant.evaluation.embed_cache import CachedEmbedder

    cached = CachedEmbedder("all-MiniLM-L6-v2", tmp_path / "cache")
    cached._model = shared_embedder().model  # share the loaded model
    texts = ["alpha beta", "gamma delta", "alpha beta"]
    first = cached.encode(texts)
    assert cached.misses == 2 and cached.hits == 0
    np.testing.assert_array_equal(first, shared_embedder().encode(texts))
    again = CachedEmbedder("all-MiniLM-L6-v2", tmp_path / "cache")  # no model loaded: all from disk
    np.testing.assert_array_equal(again.encode(texts), first)
    assert again.hits == 3 and again.misses == 0 and again._model is None
    other_model = CachedEmbedder("other-model", tmp_path / "cache")
    other_model._model = shared_embedder().model
    other_model.encode(["alpha beta"])
    assert other_model.misses == 1  # keyed by model name too


def test_bench_runs_the_product_retriever_and_caches_embeddings(tmp_path: Path) -> None:
    from assistant.evaluation.bench import run_retrieval_bench

    folder = write_beir(tmp_path / "tiny")
    kwargs = {"settings": Settings(index_dir=tmp_path / "unused"), "cache_dir": tmp_path / "cache",
              "index_dir": tmp_path / "bench-index", "log": lambda line: None}
    (report,) = run_retrieval_bench(folder, "test", **kwargs)  # type: ignore[arg-type]
    by_mode = {m.mode: m for m in report.modes}
    assert set(by_mode) == {"dense", "bm25", "hybrid"}
    for m in report.modes:
        assert m.metrics["ndcg@10"] == pytest.approx(1.0), m
        assert m.metrics["recall@100"] == pytest.approx(1.0)
        assert m.queries == 3
    assert report.index["documents"] == 4 and report.index["embed_cache_misses"] > 0
    # A fresh bench index with the same cache embeds nothing.
    kwargs["index_dir"] = tmp_path / "bench-index-2"
    (again,) = run_retrieval_bench(folder, "test", modes=["hybrid"], **kwargs)  # type: ignore[arg-type]
    assert again.index["embed_cache_misses"] == 0 and again.index["embedded_chunks"] == 4


def test_bench_cli_with_tuning_reports_train_tuned_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    folder = write_beir(tmp_path / "tiny")
    out = tmp_path / "bench.json"
    code = main(["bench", "retrieval", "--beir", str(folder), "--tune", "--bench-dir", str(tmp_path / "idx"),
                 "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "nDCG@10" in printed and "tuned on train" in printed
    reports = json.loads(out.read_text())
    assert len(reports) == 2 and reports[1]["tuning"]["split"] == "train"
    assert reports[1]["tuning"]["queries"] == 2  # train has two judged queries; test was not used


def test_fusion_functions_by_hand() -> None:
    from assistant.retrieve import HybridRetriever

    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]
    sparse = [(3, 10.0), (1, 5.0), (4, 0.0)]
    rrf = HybridRetriever(None, None, Settings(fusion="rrf", rrf_k=60, dense_weight=1.0))  # type: ignore[arg-type]
    assert rrf.fuse(dense, sparse) == pytest.approx({1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 63})
    weighted = HybridRetriever(None, None, Settings(fusion="rrf", rrf_k=10, dense_weight=2.0))  # type: ignore[arg-type]
    assert weighted.fuse(dense, sparse)[1] == pytest.approx(2 / 11 + 1 / 12)
    # Min-max: dense 0.9/0.5/0.1 -> 1/0.5/0; BM25 10/5/0 -> 1/0.5/0.
    relative = HybridRetriever(None, None, Settings(fusion="relative", dense_weight=1.5))  # type: ignore[arg-type]
    assert relative.fuse(dense, sparse) == pytest.approx({1: 1.5 + 0.5, 2: 0.75, 3: 1.0, 4: 0.0})
    # One retriever alone keeps its own order whatever the weights.
    alone = relative.fuse(dense, [])
    assert sorted(alone, key=lambda c: -alone[c]) == [1, 2, 3]
    zscore = HybridRetriever(None, None, Settings(fusion="zscore"))  # type: ignore[arg-type]
    fused = zscore.fuse(dense, sparse)
    assert sorted(fused, key=lambda c: -fused[c])[0] == 1


def test_bench_with_pseudo_relevance_feedback_and_relative_fusion(tmp_path: Path) -> None:
    from assistant.evaluation.bench import run_retrieval_bench

    folder = write_beir(tmp_path / "tiny")
    settings = Settings(index_dir=tmp_path / "unused", fusion="relative", prf_weight=0.5, prf_depth=2)
    (report,) = run_retrieval_bench(folder, "test", settings=settings, cache_dir=tmp_path / "cache",
                                    index_dir=tmp_path / "idx", modes=["hybrid", "dense"], log=lambda line: None)
    assert [m.metrics["ndcg@10"] for m in report.modes] == pytest.approx([1.0, 1.0])
    assert "prf_ms" in report.modes[0].stage_ms_p50
