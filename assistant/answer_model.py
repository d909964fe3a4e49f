"""The learned answer scorer: gradient-boosted trees over assistant.answer_features, then calibration.

Two stages, both fitted by benchmarks/train_answerer.py on ../shared/qa (SQuAD 2.0 train articles)
and shipped as one JSON file (`models/answerer.json`, with the data hash, feature names and
validation figures beside the parameters):
- the unit scorer: a HistGradientBoosting classifier's trees ("does this unit contain the answer?"),
  evaluated here with numpy, so answering needs no scikit-learn;
- the answer calibrator: logistic regression over question-level signals (the best unit's score,
  the runner-up's, the best unit and passage cosines) giving P(the best unit answers the question),
  fitted on held-out articles with both kinds of unanswerable questions (SQuAD's adversarial ones,
  and questions asked against an index of other articles). The assistant abstains below
  `threshold`, chosen on held-out articles for the precision recorded in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PATH = Path(__file__).resolve().parent / "models" / "answerer.json"
CALIBRATION_FEATURES = ("top_logit", "margin", "top_cos", "max_cos", "max_dense", "top_share")


class Trees:
    """A boosted-tree ensemble stored as flat arrays (one row per tree, padded), evaluated for all
    trees at once: one gather per tree level instead of a Python loop over trees."""

    def __init__(self, baseline: float, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                 right: np.ndarray, value: np.ndarray, leaf: np.ndarray, depth: int) -> None:
        self.baseline = baseline
        self.feature, self.threshold = feature, threshold
        self.left, self.right, self.value, self.leaf = left, right, value, leaf
        self.depth = depth

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Trees:
        trees = raw["trees"]
        width = max(len(t["feature"]) for t in trees)

        def pad(key: str, dtype: Any, fill: Any) -> np.ndarray:
            out = np.full((len(trees), width), fill, dtype=dtype)
            for i, t in enumerate(trees):
                out[i, : len(t[key])] = t[key]
            return out

        return cls(float(raw["baseline"]), pad("feature", np.int32, 0), pad("threshold", np.float64, 0.0),
                   pad("left", np.int32, 0), pad("right", np.int32, 0), pad("value", np.float64, 0.0),
                   pad("leaf", bool, True), int(raw["depth"]))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's raw score (log-odds) for each row of x."""
        x = np.asarray(x, dtype=np.float64)
        n_trees = self.feature.shape[0]
        node = np.zeros((n_trees, len(x)), dtype=np.int32)
        rows = np.arange(n_trees)[:, None]
        cols = np.arange(len(x))[None, :]
        for _ in range(self.depth):
            feat = self.feature[rows, node]
            go_left = x[cols, feat] <= self.threshold[rows, node]
            step = np.where(go_left, self.left[rows, node], self.right[rows, node])
            node = np.where(self.leaf[rows, node], node, step)
        return self.baseline + self.value[rows, node].sum(axis=0)


@dataclass
class AnswerModel:
    features: tuple[str, ...]
    trees: Trees
    calibration_weights: np.ndarray
    calibration_bias: float
    calibration_mean: np.ndarray
    calibration_scale: np.ndarray
    threshold: float
    meta: dict[str, Any]

    def unit_scores(self, x: np.ndarray) -> np.ndarray:
        """Log-odds that each candidate unit holds the answer."""
        if len(x) == 0:
            return np.zeros(0)
        return self.trees.raw(x)

    def confidence(self, signals: np.ndarray) -> float:
        """P(the best unit answers the question) from the CALIBRATION_FEATURES signals."""
        z = (np.asarray(signals, dtype=np.float64) - self.calibration_mean) / self.calibration_scale
        return float(1.0 / (1.0 + np.exp(-(z @ self.calibration_weights + self.calibration_bias))))


def calibration_signals(scores: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The question-level inputs of the calibrator (CALIBRATION_FEATURES), from one question's
    candidate scores and feature rows (columns in assistant.answer_features.FEATURES order)."""
    from assistant.answer_features import FEATURES

    if len(scores) == 0:
        return np.array([-10.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    cos, dense = x[:, FEATURES.index("cos")], x[:, FEATURES.index("passage_dense")]
    share = x[:, FEATURES.index("idf_share")]
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    second = float(scores[order[1]]) if len(order) > 1 else float(scores[best]) - 5.0
    return np.array([float(scores[best]), float(scores[best]) - second, float(cos[best]), float(cos.max()),
                     float(dense.max()), float(share[best])])


def model_to_dict(features: tuple[str, ...], trees: dict[str, Any], calibration: dict[str, Any],
                  threshold: float, meta: dict[str, Any]) -> dict[str, Any]:
    return {"format": 1, "features": list(features), "scorer": trees, "calibration": calibration,
            "threshold": threshold, "meta": meta}


def load_model(path: Path | str = MODEL_PATH) -> AnswerModel:
    """The shipped (or a user's retrained) model; a clear error when the file is missing or stale."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RuntimeError(f"answer model {path} is missing: rebuild it with `python benchmarks/train_answerer.py`"
                           ) from exc
    from assistant.answer_features import FEATURES

    if tuple(raw["features"]) != FEATURES:
        raise RuntimeError(f"answer model {path} was trained on other features than this version computes: "
                           "rebuild it with `python benchmarks/train_answerer.py`")
    cal = raw["calibration"]
    return AnswerModel(tuple(raw["features"]), Trees.from_dict(raw["scorer"]), np.asarray(cal["weights"]),
                       float(cal["bias"]), np.asarray(cal["mean"]), np.asarray(cal["scale"]),
                       float(raw["threshold"]), raw.get("meta", {}))


@lru_cache(maxsize=4)
def shipped_model(path: str = str(MODEL_PATH)) -> AnswerModel:
    return load_model(path)


def export_hist_gbm(model: Any) -> dict[str, Any]:
    """A fitted sklearn HistGradientBoostingClassifier (binary, numeric features, no missing
    values) as plain lists (training side only)."""
    trees = []
    depth = 0
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append({
            "feature": nodes["feature_idx"].astype(int).tolist(),
            "threshold": nodes["num_threshold"].astype(float).tolist(),
            "left": nodes["left"].astype(int).tolist(),
            "right": nodes["right"].astype(int).tolist(),
            "value": nodes["value"].astype(float).tolist(),
            "leaf": nodes["is_leaf"].astype(bool).tolist(),
        })
        depth = max(depth, int(nodes["depth"].max()))
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
    return {"baseline": baseline, "depth": depth + 1, "trees": trees}
