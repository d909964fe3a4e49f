"""`assistant` command line: ingest, remove, documents, search, ask, eval, golden import, bench, serve, feedback.

Exit codes: 0 success; 1 some file failed to ingest or an eval gate was missed; 2 bad usage
or an index that cannot be used (the message says what to do).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from assistant.settings import EVERY_COMMAND, SETTINGS, Setting

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _flag_help(row: Setting) -> str:
    """The row's help as plain text (no backticks, links named), with its variable and default."""
    text = re.sub(r"\[([^]]+)\]\(#[^)]+\)", r'README "\1"', f"{row.help} (${row.env}; default: {row.default_text()})")
    return text.replace("`", "").replace("%", "%%")


def _add_flag(parser: argparse.ArgumentParser, row: Setting, **extra: Any) -> None:
    """The flag of one setting; its value lands in `args.<setting name>` (None: not given)."""
    if row.flag is None:
        raise ValueError(f"setting {row.name} has no flag")
    options: dict[str, Any] = {"dest": row.name, "help": _flag_help(row), **extra}
    choices = row.choices
    if row.plugin_choices:  # what plugins registered is a valid value as well
        from assistant import plugins

        registry = getattr(plugins, row.plugin_choices)()
        choices = tuple(dict.fromkeys((*choices, *registry.names())))
    if choices:
        options["choices"] = choices
    if row.metavar:
        options["metavar"] = row.metavar
    if row.repeat:
        options["action"] = "append"
    elif row.type in (int, float):
        options["type"] = row.type
    parser.add_argument(row.flag, **options)


def _common() -> argparse.ArgumentParser:
    """Flags every command takes, before or after its name (a value given after wins)."""
    common = argparse.ArgumentParser(add_help=False)
    for row in SETTINGS:
        if row.flag and EVERY_COMMAND in row.commands:
            _add_flag(common, row, default=argparse.SUPPRESS)
    return common


def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of the settings table that `command` takes (assistant.settings.SETTINGS)."""
    for row in SETTINGS:
        if row.flag and command in row.commands:
            _add_flag(parser, row)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="assistant", parents=[common],
                                     description="Ask questions about your documents; every claim cites its passage.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="index files and folders (incremental)")
    p.add_argument("paths", nargs="+", help=".txt .md .html .pdf .docx files or folders")
    p.add_argument("--prune", action="store_true", help="also drop documents whose files are gone")
    add_setting_flags(p, "ingest")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("remove", parents=[common], help="remove documents by path or document id")
    p.add_argument("targets", nargs="+")

    p = sub.add_parser("documents", parents=[common], help="list indexed documents and index stats")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", parents=[common], help="ranked passages for a query")
    p.add_argument("query")
    add_setting_flags(p, "search")
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", parents=[common], help="answer a question with citations")
    p.add_argument("question")
    add_setting_flags(p, "ask")
    p.add_argument("--history", action="append", default=[], metavar="EARLIER_QUESTION",
                   help="an earlier question of the conversation (repeat, oldest first)")
    p.add_argument("--session", help="keep the conversation under this name (stored beside the index)")
    p.add_argument("--json", action="store_true", help="machine-readable result")

    p = sub.add_parser("eval", parents=[common], help="score against a golden Q&A file (JSON Lines) or SQuAD JSON")
    p.add_argument("golden", type=Path)
    p.add_argument("--format", choices=["golden", "squad"], dest="golden_format",
                   help="golden: JSON Lines golden file; squad: SQuAD v1.1/v2.0 JSON (default: squad for a .json "
                        "file whose top level has data[].paragraphs, else golden)")
    add_setting_flags(p, "eval")
    p.add_argument("--calibrate-verifier", action="store_true",
                   help="also print the citation-verifier threshold the golden set supports (ASSISTANT_VERIFY_THRESHOLD)")
    p.add_argument("--corpus", nargs="+", help="ingest these paths first (incremental)")
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
    add_setting_flags(p, "serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if any(a == "--model" or a.startswith("--model=") for a in unknown):
            parser.error("--model names the LLM (ask, eval, serve); the embedding model flag is --embedding-model")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from assistant.types import StoreError

    try:
        from assistant.commands import COMMANDS

        return COMMANDS[args.command](args)
    except (StoreError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the index keeps its last committed state", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
