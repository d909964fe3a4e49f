"""`assistant` command line: ingest, remove, documents, search, ask, eval, golden import, bench, serve, feedback.

Exit codes: 0 success; 1 some file failed to ingest or an eval gate was missed; 2 bad usage
or an index that cannot be used (the message says what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from assistant.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index-dir", default=argparse.SUPPRESS,
                        help="index folder (default: $ASSISTANT_INDEX_DIR or ~/.local/share/assistant/index)")
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL",
                        help="keep the index in PostgreSQL with pgvector: postgresql://user:password@host:port/db "
                             "(default: $ASSISTANT_STORE, else the local --index-dir folder)")
    common.add_argument("--embedding-model", default=argparse.SUPPRESS,
                        help="embedding model name or folder (default: $ASSISTANT_MODEL or all-MiniLM-L6-v2)")
    common.add_argument("--embed-backend", choices=["onnx", "torch", "onnx-int8"], default=argparse.SUPPRESS,
                        help="run the embedding model in fp32 through ONNX Runtime (onnx) or torch, or as int8 ONNX "
                             "(default: $ASSISTANT_EMBED_BACKEND or onnx); an int8 index opens only with onnx-int8")
    common.add_argument("--embed-context", choices=["none", "title"], default=argparse.SUPPRESS,
                        help="embed each chunk alone (none) or with its document title in front (title); a new "
                             "index records it (default: $ASSISTANT_EMBED_CONTEXT or none)")
    return common


def _llm_options(p: argparse.ArgumentParser) -> None:
    """Answer-backend flags (ask, eval, serve); each defaults to its ASSISTANT_* setting."""
    p.add_argument("--backend", choices=["extractive", "openai", "local"],
                   help="who writes the answer (default: $ASSISTANT_BACKEND or extractive)")
    p.add_argument("--model", dest="llm_model", metavar="MODEL",
                   help="LLM: a model name for --backend openai, a GGUF file (or 'smollm2') for --backend local")
    p.add_argument("--llm-base-url", metavar="URL",
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (default: $OPENAI_BASE_URL)")
    p.add_argument("--llm-api-key", metavar="KEY",
                   help="API key (default: $ASSISTANT_LLM_API_KEY or $OPENAI_API_KEY; prefer the variables)")
    p.add_argument("--prompts-dir", metavar="DIR", help="a folder of your own prompt templates (answer.j2, condense.j2)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="assistant", parents=[common],
                                     description="Ask questions about your documents; every claim cites its passage.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="index files and folders (incremental)")
    p.add_argument("paths", nargs="+", help=".txt .md .html .pdf .docx files or folders")
    p.add_argument("--prune", action="store_true", help="also drop documents whose files are gone")
    p.add_argument("--chunk-tokens", type=int, help="chunk size, in the embedding model's word pieces (ASSISTANT_CHUNK_TOKENIZER=cl100k: cl100k tokens)")
    p.add_argument("--chunk-overlap", type=int, help="overlap between chunks in tokens")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("remove", parents=[common], help="remove documents by path or document id")
    p.add_argument("targets", nargs="+")

    p = sub.add_parser("documents", parents=[common], help="list indexed documents and index stats")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", parents=[common], help="ranked passages for a query")
    p.add_argument("query")
    p.add_argument("--top-k", type=int)
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", parents=[common], help="answer a question with citations")
    p.add_argument("question")
    _llm_options(p)
    p.add_argument("--history", action="append", default=[], metavar="EARLIER_QUESTION",
                   help="an earlier question of the conversation (repeat, oldest first)")
    p.add_argument("--session", help="keep the conversation under this name (stored beside the index)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--json", action="store_true", help="machine-readable result")

    p = sub.add_parser("eval", parents=[common], help="score against a golden Q&A file (JSON Lines) or SQuAD JSON")
    p.add_argument("golden", type=Path)
    p.add_argument("--format", choices=["golden", "squad"], dest="golden_format",
                   help="golden: JSON Lines golden file; squad: SQuAD v1.1/v2.0 JSON (default: squad for a .json "
                        "file whose top level has data[].paragraphs, else golden)")
    _llm_options(p)
    p.add_argument("--calibrate-verifier", action="store_true",
                   help="also print the citation-verifier threshold the golden set supports (ASSISTANT_VERIFY_THRESHOLD)")
    p.add_argument("--corpus", nargs="+", help="ingest these paths first (incremental)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--json", type=Path, dest="json_out", help="write the full report as JSON here")
    p.add_argument("--markdown", type=Path, help="write a Markdown report here")
    p.add_argument("--calibrate", action="store_true", help="also print what each abstention threshold gives")
    for gate in ("accuracy", "citation-precision", "citation-recall", "evidence-hit", "abstention-accuracy"):
        p.add_argument(f"--min-{gate}", type=float, metavar="X", help=f"exit 1 when {gate.replace('-', ' ')} < X")
    p.add_argument("--max-false-abstention", type=float, metavar="X", help="exit 1 when the false-abstention rate > X")

    p = sub.add_parser("golden", parents=[common], help="golden files: import other question sets")
    golden_sub = p.add_subparsers(dest="golden_command", required=True)
    g = golden_sub.add_parser("import", parents=[common],
                              help="convert a SQuAD v1.1/v2.0 JSON file to a golden file (and its articles to .txt)")
    g.add_argument("source_format", choices=["squad"], metavar="FORMAT", help="squad")
    g.add_argument("source", type=Path, metavar="FILE.json")
    g.add_argument("-o", "--out", type=Path, required=True, metavar="GOLDEN.jsonl", help="golden file to write")
    g.add_argument("--docs-dir", type=Path, metavar="DIR",
                   help="also write one .txt per article here (title, then its paragraphs), for `assistant ingest DIR`")

    p = sub.add_parser("bench", parents=[common], help="benchmarks (retrieval quality on a BEIR dataset)")
    bench_sub = p.add_subparsers(dest="bench_command", required=True)
    b = bench_sub.add_parser("retrieval", parents=[common], help="nDCG@10, Recall@10/100 of dense, BM25 and hybrid")
    b.add_argument("--beir", type=Path, required=True, metavar="DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")
    b.add_argument("--split", default="test", help="qrels split to report (default: test)")
    b.add_argument("--tune", action="store_true", help="tune BM25 and fusion settings on --tune-split first")
    b.add_argument("--tune-split", default="train", help="split to tune on (default: train)")
    b.add_argument("--modes", nargs="+", choices=["dense", "bm25", "hybrid"], default=["dense", "bm25", "hybrid"])
    b.add_argument("--bench-dir", type=Path, help="bench index folder (default: under ~/.cache/assistant/beir)")
    b.add_argument("--cache-dir", type=Path, help="embedding cache folder (default: ~/.cache/assistant/embeddings)")
    b.add_argument("--json", type=Path, dest="json_out", help="write the reports as JSON here")

    p = sub.add_parser("serve", parents=[common], help="chat UI, JSON API and embeddable page on one port")
    _llm_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--api-key", default=os.environ.get("ASSISTANT_API_KEY") or None,
                   help="require 'Authorization: Bearer KEY' on /api and KEY as the UI password "
                        "(default: $ASSISTANT_API_KEY; prefer the variable: flags show in `ps`)")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="CORS: a browser origin allowed to call the API, e.g. https://portal.example.com "
                        "(repeat; default: $ASSISTANT_ALLOWED_ORIGINS, comma-separated; none)")
    p.add_argument("--frame-ancestors", action="append", metavar="SOURCE",
                   help="who may show /ui and /embed in a frame (CSP frame-ancestors; repeat; "
                        "default: $ASSISTANT_FRAME_ANCESTORS or 'self')")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback --host without an API key (trusted networks only)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per model or vector-search call (default: 1; concurrent requests use the "
                        "other cores, and concurrent questions share one model call)")

    p = sub.add_parser("db", parents=[common], help="PostgreSQL store: create or upgrade its tables")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", parents=[common],
                      help="create the extension, tables and indexes in --store (idempotent; safe to re-run)")

    p = sub.add_parser("feedback", parents=[common], help="thumbs up/down given in the chat UI")
    feedback_sub = p.add_subparsers(dest="feedback_command", required=True)
    f = feedback_sub.add_parser("export", parents=[common],
                                help="write the feedback as golden-file seeds (JSON Lines) to review")
    f.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    llm = {name: getattr(args, name, None) for name in ("backend", "llm_model", "llm_base_url", "llm_api_key", "prompts_dir")}
    return Settings.from_env(index_dir=getattr(args, "index_dir", None), store=getattr(args, "store", None),
                             model=getattr(args, "embedding_model", None),
                             embed_backend=getattr(args, "embed_backend", None),
                             embed_context=getattr(args, "embed_context", None),
                             **llm, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if any(a == "--model" or a.startswith("--model=") for a in unknown):
            parser.error("--model names the LLM (ask, eval, serve); the embedding model flag is --embedding-model")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from assistant.index import StoreError

    try:
        handler = globals()[f"cmd_{args.command}"]
        return int(handler(args))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the index keeps its last committed state", file=sys.stderr)
        return 130


def cmd_ingest(args: argparse.Namespace) -> int:
    from assistant.ingest import IngestInterrupted, Ingestor

    settings = _settings(args, chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
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

    report = Ingestor(_settings(args)).remove(args.targets)
    for r in report.results:
        print(f"{r.status}: {r.source}" + (f" ({r.reason})" if r.reason else ""))
    return 1 if report.failed else 0


def _open(args: argparse.Namespace, **extra: Any):  # type: ignore[no-untyped-def]
    from assistant.pipeline import Assistant

    return Assistant(_settings(args, **extra))


def cmd_documents(args: argparse.Namespace) -> int:
    from assistant.index import open_store, read_manifest, store_location

    settings = _settings(args)
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
    from assistant.index.postgres import migrate, redact

    settings = _settings(args)
    if not settings.store:
        print("error: give the database with --store postgresql://user:password@host:port/db "
              "(or $ASSISTANT_STORE)", file=sys.stderr)
        return 2
    embedder = Embedder(settings.model, settings.embed_backend)
    meta = migrate(settings.store, embedder.name, embedder.dim, settings.embed_context)
    print(f"{redact(settings.store)}: schema version {meta['schema_version']}, model {meta['model']} "
          f"(dim {meta['dim']}), generation {meta['generation']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _open(args) as assistant:
        result = assistant.search(args.query, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(json.dumps({"query": result.query, "passages": [p.to_dict() for p in result.passages],
                          "timings": result.timings}, indent=2, ensure_ascii=False))
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

    settings = _settings(args)
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
            print(f"[{c.n}] {c.title[:70]} — {Path(c.source).name}, chars {c.start}-{c.end} (chunk {c.chunk_id})")
    if result.unsupported:
        print("\nnot supported by the sources they cite" + (" (marked [unverified]):" if "start" in result.unsupported[0]
                                                          else " (removed):"))
        for u in result.unsupported:
            print(f"- {u['sentence']}  ({u['reason']})")
    if result.standalone_question != result.question:
        print(f"\n(read as: {result.standalone_question})")
    if result.backend != "extractive" or result.fallback_reason:
        model = f" ({result.model})" if result.model else ""
        print(f"\n(answered by {result.backend}{model}" + (f"; {result.fallback_reason})" if result.fallback_reason else ")"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant import eval as ev

    if not args.golden.exists():
        raise FileNotFoundError(f"golden file {args.golden} does not exist")
    items, problems, fmt = ev.read_items(args.golden, args.golden_format)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if fmt == "squad" and problems:
        print(f"warning: {len(problems)} SQuAD question(s), paragraph(s) or article(s) skipped", file=sys.stderr)
    if not items:
        print(f"error: no usable items in {args.golden}", file=sys.stderr)
        return 2
    if args.corpus:
        from assistant.ingest import Ingestor

        ingest_report = Ingestor(_settings(args)).ingest_paths(args.corpus, progress=False)
        print(ingest_report.summary(), file=sys.stderr)
    calibrating = args.calibrate
    with _open(args, **({"abstain_threshold": 0.0} if calibrating else {})) as assistant:
        report = ev.evaluate(assistant, items, top_k=args.top_k, problems=problems)
        from assistant.answer import make_answerer

        configured = make_answerer(_settings(args)).abstain_threshold
        verifier = ev.calibrate_verifier(assistant, items, top_k=args.top_k) if args.calibrate_verifier else None
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
        for row in ev.calibrate(report.results):
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
    from assistant import eval as ev

    if not args.source.exists():
        raise FileNotFoundError(f"{args.source} does not exist")
    squad = ev.read_squad(args.source)
    for problem in squad.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not squad.items:
        print(f"error: no usable questions in {args.source}" + (f" ({len(squad.problems)} skipped)" if squad.problems else ""),
              file=sys.stderr)
        return 2
    ev.write_golden(squad.items, args.out)
    answerable = sum(1 for i in squad.items if i.answerable)
    print(f"wrote {len(squad.items)} questions ({answerable} answerable, {len(squad.items) - answerable} unanswerable) "
          f"to {args.out}; {len(squad.problems)} skipped")
    if args.docs_dir:
        files = ev.write_squad_docs(squad.articles, args.docs_dir)
        print(f"wrote {len(files)} article(s) to {args.docs_dir}: `assistant ingest {args.docs_dir}`, "
              f"then `assistant eval {args.out}`")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from assistant.bench import run_retrieval_bench

    reports = run_retrieval_bench(args.beir, split=args.split, settings=_settings(args), tune=args.tune,
                                  tune_split=args.tune_split, cache_dir=args.cache_dir, index_dir=args.bench_dir,
                                  modes=args.modes, log=lambda line: print(line, file=sys.stderr, flush=True))
    for n, report in enumerate(reports):
        print(("tuned on " + args.tune_split + ": " if n else "") + report.table())
        print()
    if args.json_out:
        args.json_out.write_text(json.dumps([r.to_json() for r in reports], indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from assistant.server import ServerConfig, check_exposure, check_origins, normalize_frame_ancestors, parse_list

    config = ServerConfig(
        host=args.host, port=args.port, api_key=args.api_key or None, insecure_no_auth=args.insecure_no_auth,
        allowed_origins=check_origins(parse_list(args.allow_origin or os.environ.get("ASSISTANT_ALLOWED_ORIGINS"))),
        frame_ancestors=normalize_frame_ancestors(
            parse_list(args.frame_ancestors or os.environ.get("ASSISTANT_FRAME_ANCESTORS"))),
    )
    check_exposure(config)  # before loading anything
    from assistant.server import serve, set_compute_threads
    from assistant.service import AssistantService

    settings = _settings(args)
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

    path = _settings(args).index_dir / "feedback.sqlite"
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


if __name__ == "__main__":
    sys.exit(main())
