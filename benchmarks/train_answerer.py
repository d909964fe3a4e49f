"""Rebuild the answer scorer (assistant/models/answerer.json) from SQuAD-format training data.

    .venv/bin/python benchmarks/train_answerer.py                       # ../shared/qa, 5 folds by article
    .venv/bin/python benchmarks/train_answerer.py --max-articles 4 --max-questions 30 --out /tmp/m.json  # a slice

1. Every article is ingested into real indexes (benchmarks/qa_folds.py: per fold, one index of the
   fold's articles, and per article one of the fold's other articles) and every question goes
   through the real retriever and `LearnedAnswerer.prepare`: the same candidates and features as
   at question time. A candidate is positive when it contains an answer string (normalized).
2. Cross-validation by article: a gradient-boosted unit scorer per fold, fitted on the other folds'
   answerable questions, scores the held-out fold.
3. The calibrator (logistic regression on question-level signals, assistant.answer_model) is fitted on
   those held-out scores, labelled by whether the best unit answers; unanswerable questions (SQuAD's
   adversarial ones and questions asked against other articles) are negatives. The threshold is the
   lowest confidence whose answered questions reach `--precision` on held-out data.
4. The shipped scorer is refitted on all articles. Data hash, features, parameters and the held-out
   figures (per-fold calibrators and thresholds, so they are honest) go into the file's "meta".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_common  # noqa: F401  (offline switches, project on sys.path)
import numpy as np
from bench_common import log
from qa_folds import SQUAD, asked_questions, file_sha256, load_articles

from assistant.answer import LearnedAnswerer
from assistant.answer_features import FEATURES
from assistant.answer_model import (
    CALIBRATION_FEATURES,
    MODEL_PATH,
    calibration_signals,
    export_hist_gbm,
    model_to_dict,
)
from assistant.condense import condense
from assistant.embed import Embedder
from assistant.settings import Settings
from assistant.text import normalize

COL = {name: i for i, name in enumerate(FEATURES)}
GBM_PARAMS = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 40,
              "l2_regularization": 1.0, "random_state": 0}


@dataclass
class Row:
    """One question asked against one index, with its candidates' features and labels."""

    id: str
    question: str
    kind: str  # "answerable", "adversarial" or "elsewhere"
    fold: int
    x: np.ndarray
    y: np.ndarray
    texts: list[str]
    answers: list[str]
    hit8: bool
    extra: dict[str, Any] = field(default_factory=dict)


def collect(data: Path, folds: int, work: Path, settings: Settings, max_articles: int | None = None,
            max_questions: int | None = None, max_paragraphs: int | None = None, hook: Any = None) -> list[Row]:
    """Rows for every asked question; `hook(asked, condensed, retrieval)` may add `extra` (bench)."""
    embedder = Embedder(settings.model, settings.embed_backend)
    articles = load_articles(data, max_articles, max_questions, max_paragraphs)
    rows: list[Row] = []
    started = time.perf_counter()
    for n, asked in enumerate(asked_questions(articles, folds, work, embedder, settings)):
        assistant = asked.assistant
        condensed = condense(asked.question.text, None)
        retrieval = assistant.retriever.run(condensed.standalone, top_k=max(settings.top_k, 8))
        answerer = LearnedAnswerer(assistant.store, embedder)
        candidates, x = answerer.prepare(condensed, retrieval.passages, assistant.retriever.stats,
                                         retrieval.query_vector)
        answers = [normalize(a) for a in asked.question.answers]
        texts = [c.unit.shown() for c in candidates]
        y = np.array([asked.kind == "answerable" and any(a and a in normalize(t) for a in answers) for t in texts],
                     dtype=bool)
        hit = any(a and a in normalize(p.text) for p in retrieval.passages for a in answers)
        row = Row(asked.question.id, asked.question.text, asked.kind, asked.fold, x, y, texts,
                  asked.question.answers, hit)
        if hook is not None:
            row.extra = hook(asked, condensed, retrieval, candidates)
        rows.append(row)
        if n % 1000 == 0:
            log(f"{n} questions asked, {time.perf_counter() - started:.0f} s")
    return rows


def fit_scorer(rows: list[Row]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = [r for r in rows if r.kind == "answerable" and len(r.y)]
    x = np.concatenate([r.x for r in train])
    y = np.concatenate([r.y for r in train])
    return HistGradientBoostingClassifier(**GBM_PARAMS).fit(x, y)


def signals(row: Row, scores: np.ndarray) -> np.ndarray:
    return calibration_signals(scores, row.x)


def top_correct(row: Row, scores: np.ndarray) -> bool:
    return bool(len(scores)) and row.kind == "answerable" and bool(row.y[int(np.argmax(scores))])


def fit_calibrator(sig: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = sig.mean(axis=0), sig.std(axis=0) + 1e-9
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((sig - mean) / scale, labels)
    return {"features": list(CALIBRATION_FEATURES), "weights": lr.coef_[0].tolist(),
            "bias": float(lr.intercept_[0]), "mean": mean.tolist(), "scale": scale.tolist()}


def apply_calibrator(cal: dict[str, Any], sig: np.ndarray) -> np.ndarray:
    z = (sig - np.asarray(cal["mean"])) / np.asarray(cal["scale"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(cal["weights"]) + cal["bias"])))


def pick_threshold(conf: np.ndarray, correct: np.ndarray, precision: float) -> float:
    """The lowest confidence at which the questions answered (confidence >= it) reach `precision`."""
    order = np.argsort(-conf, kind="stable")
    hits = np.cumsum(correct[order])
    prec = hits / np.arange(1, len(order) + 1)
    ok = np.where(prec >= precision)[0]
    if not len(ok):
        return float(conf.max()) + 1e-6
    return float(conf[order[ok[-1]]])


def cross_validate(rows: list[Row], precision: float) -> dict[str, Any]:
    """Held-out scores, confidences and decisions per row, with per-fold calibrators and thresholds."""
    folds = sorted({r.fold for r in rows})
    scores: dict[int, np.ndarray] = {}
    for f in folds:
        model = fit_scorer([r for r in rows if r.fold != f])
        for i, r in enumerate(rows):
            if r.fold == f:
                scores[i] = model.decision_function(r.x) if len(r.x) else np.zeros(0)  # log-odds, as at run time
    sig = np.stack([signals(r, scores[i]) for i, r in enumerate(rows)])
    labels = np.array([top_correct(r, scores[i]) for i, r in enumerate(rows)])
    fold_of = np.array([r.fold for r in rows])
    conf = np.zeros(len(rows))
    thresholds = {}
    for f in folds:
        other = fold_of != f
        cal = fit_calibrator(sig[other], labels[other])
        thresholds[f] = pick_threshold(apply_calibrator(cal, sig[other]), labels[other], precision)
        conf[~other] = apply_calibrator(cal, sig[~other])
    answered = np.array([conf[i] >= thresholds[r.fold] for i, r in enumerate(rows)])
    return {"scores": scores, "signals": sig, "labels": labels, "confidence": conf, "answered": answered,
            "thresholds": thresholds}


def summarize(rows: list[Row], answered: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    kinds = np.array([r.kind for r in rows])
    ans = kinds == "answerable"
    out = {
        "answerable": int(ans.sum()),
        "answerable_accuracy": round(float((answered & correct & ans).sum() / max(ans.sum(), 1)), 4),
        "false_abstention_rate": round(float((~answered & ans).sum() / max(ans.sum(), 1)), 4),
        "answered_precision": round(float((answered & correct).sum() / max(answered.sum(), 1)), 4),
    }
    for kind in ("elsewhere", "adversarial"):
        sel = kinds == kind
        out[kind] = int(sel.sum())
        out[f"{kind}_abstained"] = round(float((~answered & sel).sum() / max(sel.sum(), 1)), 4)
    out["answer_in_passages"] = round(float(np.mean([r.hit8 for r in rows if r.kind == "answerable"] or [0])), 4)
    return out


def tradeoff_table(rows: list[Row], cv: dict[str, Any]) -> str:
    """Held-out figures at several precision targets (per-fold calibrators): how the choice trades."""
    lines = ["| precision target | answerable accuracy | false abstentions | elsewhere abstained | adversarial abstained |",
             "|---|---|---|---|---|"]
    fold_of = np.array([r.fold for r in rows])
    for target in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85):
        answered = np.zeros(len(rows), dtype=bool)
        for f in sorted(set(fold_of.tolist())):
            other = fold_of != f
            cal = fit_calibrator(cv["signals"][other], cv["labels"][other])
            t = pick_threshold(apply_calibrator(cal, cv["signals"][other]), cv["labels"][other], target)
            answered[~other] = cv["confidence"][~other] >= t
        s = summarize(rows, answered, cv["labels"])
        lines.append(f"| {target} | {s['answerable_accuracy']} | {s['false_abstention_rate']} | "
                     f"{s['elsewhere_abstained']} | {s['adversarial_abstained']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SQUAD, help="SQuAD v1/v2 JSON (default: ../shared/qa)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-articles", type=int)
    parser.add_argument("--max-questions", type=int, help="per article")
    parser.add_argument("--max-paragraphs", type=int, help="per article (a small slice for tests)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/train-answerer"), help="index folders")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--precision", type=float, default=0.7,
                        help="precision of answered held-out questions the threshold is chosen for")
    parser.add_argument("--embed-backend", default="onnx")
    parser.add_argument("--save-rows", type=Path, help="also pickle the collected rows here (for experiments)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} not found (the training data lives in ../shared/qa)", file=sys.stderr)
        return 2
    settings = Settings(embed_backend=args.embed_backend)
    rows = collect(args.data, args.folds, args.work, settings, args.max_articles, args.max_questions,
                   args.max_paragraphs)
    if args.save_rows:
        import pickle

        args.save_rows.write_bytes(pickle.dumps(rows))
    log(f"{len(rows)} rows; cross-validating")
    cv = cross_validate(rows, args.precision)
    held_out = summarize(rows, cv["answered"], cv["labels"])
    log(f"held-out: {held_out}")
    print(tradeoff_table(rows, cv), file=sys.stderr)
    cal = fit_calibrator(cv["signals"], cv["labels"])
    threshold = pick_threshold(apply_calibrator(cal, cv["signals"]), cv["labels"], args.precision)
    final = fit_scorer(rows)
    meta = {
        "data": str(args.data.name), "data_sha256": file_sha256(args.data), "folds": args.folds,
        "max_articles": args.max_articles, "max_questions": args.max_questions,
        "max_paragraphs": args.max_paragraphs, "rows": len(rows),
        "embed_backend": args.embed_backend, "scorer": "sklearn HistGradientBoostingClassifier", "params": GBM_PARAMS,
        "threshold_precision": args.precision, "held_out": held_out,
        "fold_thresholds": {str(k): round(v, 4) for k, v in cv["thresholds"].items()},
        "trained": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = model_to_dict(FEATURES, export_hist_gbm(final), cal, round(threshold, 4), meta)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    tmp.replace(args.out)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), threshold {threshold:.4f}")
    print(json.dumps({"threshold": round(threshold, 4), "held_out": held_out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
