"""The learned answer scorer: the shipped file, its tree evaluator, calibration, and answers it gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import assistant_fixture, assistant_over, fresh_postgres_url

from assistant.answer_features import FEATURES
from assistant.answer_model import (
    CALIBRATION_FEATURES,
    MODEL_PATH,
    Trees,
    export_hist_gbm,
    load_model,
)
from assistant.pipeline import Assistant

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "qa" / "squad2-train" / "squad2-train-10-articles.json"


def test_shipped_model_is_small_current_and_documented() -> None:
    assert MODEL_PATH.stat().st_size < 5_000_000
    model = load_model()
    assert model.features == FEATURES
    meta = model.meta
    assert len(meta["data_sha256"]) == 64
    held_out = meta["held_out"]
    for key in ("answerable_accuracy", "false_abstention_rate", "elsewhere_abstained", "adversarial_abstained"):
        assert 0.0 <= held_out[key] <= 1.0
    assert 0.0 < model.threshold < 1.0


def test_calibration_is_monotone_in_the_best_units_score() -> None:
    model = load_model()
    base = model.calibration_mean.copy()
    i = CALIBRATION_FEATURES.index("top_logit")
    confidences = []
    for logit in np.linspace(-8, 8, 33):
        signals = base.copy()
        signals[i] = logit
        confidences.append(model.confidence(signals))
    assert all(b >= a for a, b in zip(confidences, confidences[1:], strict=False))
    assert confidences[-1] - confidences[0] > 0.3


def test_tree_evaluator_matches_scikit_learn() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.3, size=600)) > 0
    fitted = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0).fit(x, y)
    trees = Trees.from_dict(json.loads(json.dumps(export_hist_gbm(fitted))))
    probe = rng.normal(size=(50, 5))
    np.testing.assert_allclose(trees.raw(probe), fitted.decision_function(probe), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    yield from assistant_fixture(tmp_path_factory, DOCS, answerer="learned")


DOCS = {
    "volcano.txt": (
        "Mount Ardent is a stratovolcano on the island of Keld. It last erupted in 1912, when ash fell on the "
        "harbour town of Vessa for three days. The observatory on the north rim was founded by geologist Mara "
        "Ilves in 1931.\n"
    ),
    "settings.md": (
        "# Settings\n\nEvery setting can be changed with an environment variable.\n\n"
        "| setting | default | meaning |\n|---|---|---|\n| chunk size | 160 | tokens per chunk |\n"
        "| overlap | 32 | tokens shared by neighbouring chunks |\n| top k | 5 | passages shown |\n"
    ),
}


def test_a_paraphrase_sharing_no_word_with_the_answer_is_answered(assistant: Assistant) -> None:
    from assistant.text import content_terms

    question = "In what year did the mountain's most recent explosion happen?"
    sentence = "It last erupted in 1912, when ash fell on the harbour town of Vessa for three days."
    assert not set(content_terms(question)) & set(content_terms(sentence))
    result = assistant.ask(question)
    assert not result.abstained, result.answer
    assert "1912" in result.answer


def test_a_table_row_answers_with_its_header_and_no_markup(assistant: Assistant) -> None:
    result = assistant.ask("What is the default chunk size?")
    assert not result.abstained
    assert "160" in result.answer
    assert "|" not in result.answer and "#" not in result.answer
    assert "default: 160" in result.answer
    citation = result.citations[0]
    text = Path(citation.source).read_text(encoding="utf-8")
    assert text[citation.start : citation.end] == citation.quote == "| chunk size | 160 | tokens per chunk |"


def test_a_question_the_documents_do_not_answer_abstains(assistant: Assistant) -> None:
    result = assistant.ask("Who won the football world cup in 1998?")
    assert result.abstained and not result.citations


@pytest.mark.skipif(not SQUAD.is_file(), reason="../shared/qa is absent")
def test_training_script_runs_end_to_end_on_a_slice(tmp_path: Path) -> None:
    out = tmp_path / "answerer.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_answerer.py"), "--max-articles", "4",
         "--max-paragraphs", "3", "--max-questions", "12", "--folds", "2", "--work", str(tmp_path / "work"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    model = load_model(out)
    assert model.features == FEATURES
    assert model.meta["max_articles"] == 4 and model.meta["rows"] > 0
    assert "answerable_accuracy" in json.loads(run.stdout)["held_out"]


def test_an_index_without_stored_unit_vectors_answers_the_same(assistant: Assistant) -> None:
    """Indexes built before unit vectors existed: the answerer pools them from the chunk itself."""
    question = "In what year did the mountain's most recent explosion happen?"
    stored = assistant.ask(question)
    db = assistant.store.db  # type: ignore[attr-defined]
    saved = db.execute("SELECT chunk_id, n, spans, vectors FROM chunk_units").fetchall()
    db.execute("DELETE FROM chunk_units")
    try:
        ids = [p.chunk_id for p in stored.passages]
        assert assistant.store.unit_vectors(ids) == {}
        pooled = assistant.ask(question)
    finally:
        db.executemany("INSERT INTO chunk_units(chunk_id, n, spans, vectors) VALUES (?,?,?,?)", saved)
    assert pooled.answer == stored.answer
    assert abs(pooled.confidence - stored.confidence) < 0.02


def test_postgresql_store_gives_the_same_learned_answers(assistant: Assistant,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unit vectors stored in PostgreSQL serve the learned answerer exactly as the local store does."""
    questions = ["In what year did the mountain's most recent explosion happen?", "What is the default chunk size?",
                 "Who founded the observatory?", "Who won the football world cup in 1998?"]
    pg = assistant_over(tmp_path_factory, DOCS, answerer="learned", store=fresh_postgres_url())
    try:
        for question in questions:
            local, remote = assistant.ask(question), pg.ask(question)
            assert (remote.answer, remote.abstained) == (local.answer, local.abstained), question
            assert abs(remote.confidence - local.confidence) < 1e-3
            assert [c.quote for c in remote.citations] == [c.quote for c in local.citations]
    finally:
        pg.close()
