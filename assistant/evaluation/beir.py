"""BEIR datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and the standard IR metrics.

The metrics are trec_eval's own (through `pytrec_eval`, as BEIR computes them):
- nDCG@k (`ndcg_cut.k`): gain = graded relevance, discount 1/log2(rank + 1); the ideal ranking is
  all judged relevant documents sorted by grade.
- Recall@k (`recall.k`): relevant documents (grade > 0) in the top k over all relevant documents.
Scores are the mean over the queries with a relevant document in the split (others are skipped);
a judged query with no results scores 0.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytrec_eval


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title, blank line, body: how a file with a heading line looks to the product."""
        return f"{self.title}\n\n{self.text}" if self.title else self.text


@dataclass
class BeirDataset:
    name: str
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]  # only the queries judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> grade
    split: str = "test"


class BeirFormatError(ValueError):
    pass


def load_beir(folder: Path | str, split: str = "test") -> BeirDataset:
    folder = Path(folder).expanduser()
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.exists():
            available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
            hint = f" (splits here: {', '.join(available)})" if available and path == qrels_path else ""
            raise FileNotFoundError(f"{path} does not exist: not a BEIR folder{hint}")
    corpus: dict[str, BeirDoc] = {}
    for line_no, row in _jsonl(corpus_path):
        if "_id" not in row:
            raise BeirFormatError(f"{corpus_path}:{line_no}: no _id")
        corpus[str(row["_id"])] = BeirDoc(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))
    qrels = read_qrels(qrels_path)
    all_queries = {str(row["_id"]): str(row.get("text") or "") for _n, row in _jsonl(queries_path)}
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise BeirFormatError(f"{qrels_path}: {len(missing)} judged queries are not in {queries_path} "
                              f"(first: {missing[0]})")
    queries = {q: all_queries[q] for q in qrels}
    return BeirDataset(folder.name, corpus, queries, qrels, split)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`query-id <tab> corpus-id <tab> score`, with an optional header line."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for n, row in enumerate(csv.reader(handle, delimiter="\t")):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise BeirFormatError(f"{path}:{n + 1}: expected query-id, corpus-id, score")
            try:
                grade = int(float(row[2]))
            except ValueError:
                if n == 0:
                    continue  # header
                raise BeirFormatError(f"{path}:{n + 1}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = grade
    return qrels


def _jsonl(path: Path):  # type: ignore[no-untyped-def]
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BeirFormatError(f"{path}:{n}: {exc}") from None


# -- metrics ---------------------------------------------------------------------------------


def evaluate_rankings(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                      ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """Mean nDCG@k and Recall@k (keys `ndcg@10`, `recall@100`, ...) over the judged queries."""
    judged = {q: dict(rel) for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    # trec_eval ranks by score: the top max(ks) distinct documents of a ranking get descending scores.
    depth = max(ks, default=0)
    run: dict[str, dict[str, float]] = {}
    for q in judged:
        scores: dict[str, float] = {}
        for doc in rankings.get(q, ()):
            if len(scores) == depth:
                break
            scores.setdefault(doc, float(depth - len(scores)))
        if scores:
            run[q] = scores
    measures = {f"ndcg_cut.{k}" for k in ks} | {f"recall.{k}" for k in ks}
    per_query = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(run) if judged else {}
    out: dict[str, float] = {}
    for k in ks:
        for name, measure in (("ndcg", f"ndcg_cut_{k}"), ("recall", f"recall_{k}")):
            values = [per_query.get(q, {}).get(measure, 0.0) for q in judged]
            out[f"{name}@{k}"] = sum(values) / len(values) if values else 0.0
    return out


def ndcg_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranking (0 when nothing is relevant)."""
    return evaluate_rankings({"q": ranking}, {"q": relevant}, ks=(k,))[f"ndcg@{k}"]


def recall_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Recall@k of one ranking (0 when nothing is relevant)."""
    return evaluate_rankings({"q": ranking}, {"q": relevant}, ks=(k,))[f"recall@{k}"]
