"""What each `assistant` command does, given its parsed arguments (the parser is `assistant.cli`).

Each `cmd_*` returns the process exit code; `COMMANDS` maps a command name to its function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.settings import SETTINGS, Settings
from assistant.types import file_name

if TYPE_CHECKING:  # the pipeline (model, index) loads only for the commands that answer
    from assistant.pipeline import Assistant


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Defaults, then ASSISTANT_* variables, then the command's setting flags (assistant.cli), then `extra`."""
    given: dict[str, Any] = {}
    for row in SETTINGS:
        value = getattr(args, row.name, None) if row.flag else None
        given[row.name] = ",".join(value) if row.repeat and value is not None else value
    return Settings.from_env(**{**given, **extra})


def cmd_ingest(args: argparse.Namespace) -> int:
    from assistant.ingest import IngestInterrupted, Ingestor

    settings = settings_from_args(args)
    try:
        report = Ingestor(settings).ingest_paths(args.paths, prune=args.prune,
                                                 progress=False if args.no_progress else None)
    except IngestInterrupted as exc:  # Ctrl-C: the store is closed uncommitted and its lock released
        print(exc.message(), file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Exit now: a normal exit would wait for the encode thread's current step (seconds of
        # model time whose vectors nothing keeps); the index on disk is already as it was.
        os._exit(130)
    if args.json:
        print(json.dumps({"results": [r.__dict__ for r in report.results], "embedded_chunks": report.embedded_chunks,
                          "seconds": round(report.seconds, 2)}, indent=2))
    else:
        from assistant.index import store_location

        print(report.summary())
        print(f"index: {store_location(settings)}")
    return 1 if report.failed else 0


def cmd_remove(args: argparse.Namespace) -> int:
    from assistant.ingest import Ingestor

    report = Ingestor(settings_from_args(args)).remove(args.targets)
    for r in report.results:
        print(f"{r.status}: {r.source}" + (f" ({r.reason})" if r.reason else ""))
    return 1 if report.failed else 0


def _open(args: argparse.Namespace, **extra: Any) -> Assistant:
    from assistant.pipeline import Assistant

    return Assistant(settings_from_args(args, **extra))


def cmd_documents(args: argparse.Namespace) -> int:
    from assistant.index import open_store, read_manifest, store_location

    settings = settings_from_args(args)
    manifest = read_manifest(settings)
    if not manifest:
        print(f"no index at {store_location(settings)}: run `assistant ingest PATH` first", file=sys.stderr)
        return 2
    with open_store(settings, manifest["model"], int(manifest["dim"])) as store:
        docs = store.documents()
        stats = store.stats()
    if args.json:
        print(json.dumps({"stats": stats, "documents": [d.__dict__ for d in docs]}, indent=2))
        return 0
    from assistant.ingest import printable_name

    for d in docs:  # names and titles escaped: a newline or a control character cannot forge a line
        print(f"{d.id}  {d.n_chunks:>5} chunks  {printable_name(d.title)[:60]:<60}  {printable_name(d.source)}")
    print(f"{stats['documents']} documents, {stats['chunks']} chunks, model {stats['model']}, index {stats['store']}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`db migrate`: the PostgreSQL schema, created or brought up to date (the embedding model fixes the
    vector dimension, so the model is loaded to learn it)."""
    from assistant.embed import Embedder
    from assistant.index import index_backend
    from assistant.index.pg_schema import migrate, redact

    settings = settings_from_args(args)
    if not settings.store:
        print("error: give the database with --store postgresql://user:password@host:port/db "
              "(or $ASSISTANT_STORE)", file=sys.stderr)
        return 2
    embedder = Embedder(settings.model, index_backend(settings))  # an fp32 index stays fp32 (as `Assistant` opens it)
    meta = migrate(settings.store, embedder.name, embedder.dim, settings.embed_context)
    print(f"{redact(settings.store)}: schema version {meta['schema_version']}, model {meta['model']} "
          f"(dim {meta['dim']}), generation {meta['generation']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _open(args) as assistant:
        result = assistant.search(args.query, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    if not result.passages:
        print("no passages found")
    for rank, p in enumerate(result.passages, start=1):
        dense = f"{p.dense_score:.3f}" if p.dense_score is not None else "-"
        bm25 = f"{p.bm25_score:.2f}" if p.bm25_score is not None else "-"
        print(f"{rank}. score {p.score:.4f} (dense {dense}, bm25 {bm25})  {p.title[:70]}")
        print(f"   {p.source}  chars {p.start}-{p.end}  chunk {p.chunk_id}")
        print("   " + " ".join(p.text.split())[:300])
    return 0


def _session_path(settings: Settings, name: str) -> Path:
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "-_") or "default"
    return settings.index_dir / "sessions" / f"{safe}.json"


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.atomic import atomic_write_text

    settings = settings_from_args(args)
    history = list(args.history)
    session_file = _session_path(settings, args.session) if args.session else None
    if session_file and session_file.exists():
        history = json.loads(session_file.read_text())["questions"] + history
    with _open(args) as assistant:
        result = assistant.ask(args.question, history=history, top_k=args.top_k)
    if session_file:
        session_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(session_file, json.dumps({"questions": (history + [args.question])[-20:]}))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(result.answer)
    if result.citations:
        print()
        for c in result.citations:
            print(f"[{c.n}] {c.title[:70]} — {file_name(c.source)}, chars {c.start}-{c.end} (chunk {c.chunk_id})")
    for marked, how in ((True, "marked [unverified]"), (False, "removed")):
        rejected = [u for u in result.unsupported if u.marked == marked]
        if rejected:
            print(f"\nnot supported by the sources they cite ({how}):")
            for u in rejected:
                print(f"- {u.sentence}  ({u.reason})")
    if result.standalone_question != result.question:
        print(f"\n(read as: {result.standalone_question})")
    if result.backend != "extractive" or result.fallback_reason:
        model = f" ({result.model})" if result.model else ""
        print(f"\n(answered by {result.backend}{model}" + (f"; {result.fallback_reason})" if result.fallback_reason else ")"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.evaluation.run import calibrate, calibrate_verifier, evaluate
    from assistant.evaluation.squad import read_items

    if not args.golden.exists():
        raise FileNotFoundError(f"golden file {args.golden} does not exist")
    items, problems, fmt = read_items(args.golden, args.golden_format)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if fmt == "squad" and problems:
        print(f"warning: {len(problems)} SQuAD question(s), paragraph(s) or article(s) skipped", file=sys.stderr)
    if not items:
        print(f"error: no usable items in {args.golden}", file=sys.stderr)
        return 2
    if args.corpus:
        from assistant.ingest import Ingestor

        ingest_report = Ingestor(settings_from_args(args)).ingest_paths(args.corpus, progress=False)
        print(ingest_report.summary(), file=sys.stderr)
    calibrating = args.calibrate
    with _open(args, **({"abstain_threshold": 0.0} if calibrating else {})) as assistant:
        report = evaluate(assistant, items, top_k=args.top_k, problems=problems)
        from assistant.answer import make_answerer

        configured = make_answerer(settings_from_args(args)).abstain_threshold
        verifier = calibrate_verifier(assistant, items, top_k=args.top_k) if args.calibrate_verifier else None
    if calibrating:
        report.settings["configured_abstain_threshold"] = configured
    print(report.table())
    print()
    print(report.summary())
    print()
    print(report.risk_coverage_text())
    if verifier:
        print(f"\nverifier calibration: {verifier['positives']} supported and {verifier['negatives']} unsupported "
              f"(sentence, passage) pairs from the golden set; threshold {verifier['threshold']} "
              f"({verifier['false_negatives']} supported held back, {verifier['false_positives']} unsupported let through; "
              f"configured ASSISTANT_VERIFY_THRESHOLD is {assistant.settings.verify_threshold})")
    if calibrating:
        print("\nthreshold  correct  false-abst  abstained-unanswerable  balanced")
        for row in calibrate(report.results):
            print(f"{row['threshold']:>9.4f}  {row['correct']:>7}  {row['false_abstentions']:>10}  "
                  f"{row['abstained_unanswerable']:>22}  {row['balanced']:.3f}")
        print(f"(run with threshold 0; configured threshold is {configured})")
    if args.json_out:
        args.json_out.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    if args.markdown:
        args.markdown.write_text(report.markdown())
    return _gates(args, report.totals)


def cmd_golden(args: argparse.Namespace) -> int:
    """`golden import squad FILE.json -o golden.jsonl [--docs-dir DIR]`."""
    from assistant.evaluation.golden import write_golden
    from assistant.evaluation.squad import read_squad, write_squad_docs

    if not args.source.exists():
        raise FileNotFoundError(f"{args.source} does not exist")
    squad = read_squad(args.source)
    for problem in squad.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not squad.items:
        print(f"error: no usable questions in {args.source}" + (f" ({len(squad.problems)} skipped)" if squad.problems else ""),
              file=sys.stderr)
        return 2
    write_golden(squad.items, args.out)
    answerable = sum(1 for i in squad.items if i.answerable)
    print(f"wrote {len(squad.items)} questions ({answerable} answerable, {len(squad.items) - answerable} unanswerable) "
          f"to {args.out}; {len(squad.problems)} skipped")
    if args.docs_dir:
        files = write_squad_docs(squad.articles, args.docs_dir)
        print(f"wrote {len(files)} article(s) to {args.docs_dir}: `assistant ingest {args.docs_dir}`, "
              f"then `assistant eval {args.out}`")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from assistant.evaluation.bench import run_retrieval_bench

    reports = run_retrieval_bench(args.beir, split=args.split, settings=settings_from_args(args), tune=args.tune,
                                  tune_split=args.tune_split, cache_dir=args.cache_dir, index_dir=args.bench_dir,
                                  modes=args.modes, log=lambda line: print(line, file=sys.stderr, flush=True))
    for n, report in enumerate(reports):
        print(("tuned on " + args.tune_split + ": " if n else "") + report.table())
        print()
    if args.json_out:
        args.json_out.write_text(json.dumps([r.to_json() for r in reports], indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from assistant.web.config import ServerConfig, check_exposure, check_origins, normalize_frame_ancestors, parse_list

    settings = settings_from_args(args)
    config = ServerConfig(
        host=args.host, port=args.port, api_key=settings.api_key or None, insecure_no_auth=args.insecure_no_auth,
        allowed_origins=check_origins(parse_list(settings.allowed_origins)),
        frame_ancestors=normalize_frame_ancestors(parse_list(settings.frame_ancestors)),
    )
    check_exposure(config)  # before loading anything
    from assistant.service import AssistantService
    from assistant.web.config import set_compute_threads
    from assistant.web.run import serve

    set_compute_threads(args.threads)
    print(f"Loading the model and the index at {settings.index_dir} ...", flush=True)
    service = AssistantService(settings)
    try:
        serve(service, config)
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn has shut down cleanly
    finally:
        service.close()
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from assistant.feedback import FeedbackStore

    path = settings_from_args(args).index_dir / "feedback.sqlite"
    if not path.exists():
        print(f"no feedback yet ({path} does not exist)", file=sys.stderr)
        if args.out:
            args.out.write_text("")
        return 0
    store = FeedbackStore(path)
    try:
        if args.out:
            count = store.export_jsonl(args.out)
            print(f"wrote {count} feedback item(s) to {args.out}", file=sys.stderr)
        else:
            for item in store.items():
                print(json.dumps(item.to_golden_seed(), ensure_ascii=False))
    finally:
        store.close()
    return 0


def _gates(args: argparse.Namespace, t: dict[str, Any]) -> int:
    checks = [
        ("accuracy", args.min_accuracy, t["answer_accuracy"], "min"),
        ("citation precision", args.min_citation_precision, t["citation_precision"], "min"),
        ("citation recall", args.min_citation_recall, t["citation_recall"], "min"),
        ("evidence hit@k", args.min_evidence_hit, t["evidence_hit_at_k"], "min"),
        ("abstention accuracy", args.min_abstention_accuracy, t["abstention_accuracy"], "min"),
        ("false-abstention rate", args.max_false_abstention, t["false_abstention_rate"], "max"),
    ]
    failed = False
    for name, limit, value, kind in checks:
        if limit is None or value is None:
            continue
        if (kind == "min" and value < limit) or (kind == "max" and value > limit):
            print(f"GATE FAILED: {name} {value:.3f} {'<' if kind == 'min' else '>'} {limit}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ingest": cmd_ingest, "remove": cmd_remove, "documents": cmd_documents, "search": cmd_search,
    "ask": cmd_ask, "eval": cmd_eval, "golden": cmd_golden, "bench": cmd_bench, "serve": cmd_serve,
    "db": cmd_db, "feedback": cmd_feedback,
}
