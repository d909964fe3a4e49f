"""Every knob of the assistant, in one table: default, type, `ASSISTANT_*` environment name, help, flag.

Each setting is written once, as a field of `Settings` with `setting(...)`; `SETTINGS` is the table
read from those fields. The CLI builds its flags and help from it (`assistant.cli`), the server reads
its key, origins and frame sources from it, and README.md's settings table is generated from it:
`python -m assistant.settings --readme README.md` rewrites it (tests/test_settings_table.py checks it).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "ASSISTANT_"
EVERY_COMMAND = "*"  # in `commands`: a flag of the top-level parser and of every command
LLM_COMMANDS = ("ask", "eval", "serve")  # the commands that can answer with an LLM


def default_index_dir() -> Path:
    """`$ASSISTANT_INDEX_DIR`, else `$XDG_DATA_HOME/assistant/index` (~/.local/share/assistant/index)."""
    env = os.environ.get(ENV_PREFIX + "INDEX_DIR")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "assistant" / "index"


def user_cache_dir(name: str, env: str) -> Path:
    """`$<env>`, else `$XDG_CACHE_HOME/assistant/<name>` (~/.cache/assistant/<name>): rebuildable files."""
    override = os.environ.get(env)
    if override:
        return Path(override).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "assistant" / name


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    type: type
    default: Any  # None for a default computed at run time (then `shown_default` says what it is)
    help: str  # Markdown (backticks, links); the CLI shows it without the backticks
    flag: str | None = None  # e.g. "--chunk-tokens"
    commands: tuple[str, ...] = ()  # the commands with the flag (EVERY_COMMAND: all, and before the command)
    choices: tuple[str, ...] = ()
    plugin_choices: str | None = None  # an `assistant.plugins` registry whose names are valid values too
    metavar: str | None = None
    repeat: bool = False  # the flag may be given again; the values join into one comma-separated string
    shown_default: str | None = None  # Markdown, when the value itself would not tell a reader
    secret: bool = False  # never printed (repr, logs)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def default_text(self) -> str:
        """The default as README.md shows it."""
        if self.shown_default is not None:
            return self.shown_default
        value = self.default
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str):
            return f"`{value}`" if value else "none"
        return str(value)


def setting(default: Any = MISSING, help: str = "", *, factory: Any = MISSING, flag: str | None = None,
            commands: tuple[str, ...] = (), choices: tuple[str, ...] = (), metavar: str | None = None,
            repeat: bool = False, shown: str | None = None, secret: bool = False,
            plugin_choices: str | None = None) -> Any:
    """A `Settings` field together with its row of the table (kept in the field's metadata)."""
    row = {"help": help, "flag": flag, "commands": commands, "choices": choices, "metavar": metavar,
           "repeat": repeat, "shown_default": shown, "secret": secret,
           "plugin_choices": plugin_choices}
    if factory is not MISSING:
        return field(default_factory=factory, repr=not secret, metadata={"setting": row})
    return field(default=default, repr=not secret, metadata={"setting": row})


@dataclass(frozen=True)
class Settings:
    # Where the index lives: the local folder index_dir (FAISS + SQLite) unless `store` is a
    # PostgreSQL URL (index_dir then only holds uploads and feedback). See README "PostgreSQL store".
    index_dir: Path = setting(help="the index folder (also uploads, feedback and `ask --session` conversations)",
                              factory=default_index_dir, flag="--index-dir", commands=(EVERY_COMMAND,),
                              shown="`~/.local/share/assistant/index` (`$XDG_DATA_HOME/assistant/index`)")
    store: str = setting("", "keep the index in PostgreSQL with pgvector: `postgresql://user:password@host:port/db`; "
                         "see [PostgreSQL store](#postgresql-store-pgvector)", flag="--store",
                         commands=(EVERY_COMMAND,), metavar="URL", shown="the local index folder", secret=True)
    model: str = setting("all-MiniLM-L6-v2", "the embedding model: a registered name, or a folder holding a "
                         "sentence-transformers model", flag="--embedding-model", commands=(EVERY_COMMAND,))
    # 160/32 cl100k stayed the default after a sweep on SciFact train and held-out answers
    # (benchmarks/RESULTS.md, "Chunk geometry"): model-piece chunks of 160 gave nDCG within noise for
    # 4% more chunks; 192 and 254 lowered nDCG.
    chunk_tokens: int = setting(160, "the chunk size, in cl100k tokens", flag="--chunk-tokens", commands=("ingest",))
    chunk_overlap: int = setting(32, "tokens shared by neighbouring chunks", flag="--chunk-overlap",
                                 commands=("ingest",))
    chunk_tokenizer: str = setting("cl100k", "what chunk sizes count: `cl100k`, or `model` (the embedding model's own "
                                   "word pieces, capped at what one input holds); either way a chunk the model "
                                   "would truncate is split further", choices=("cl100k", "model"))
    # onnx-int8: benchmarks/RESULTS.md, "Ingest speed and memory". Torch only builds the ONNX files.
    embed_backend: str = setting(
        "onnx-int8", "the embedding model quantized to int8 in ONNX Runtime: about 2.2x fp32's encode rate, within a "
        "point of fp32 on held-out answers and 0.0013 below it on SciFact nDCG@10; `onnx` runs it in fp32 (the "
        "vectors of `torch`). ONNX files are built once offline into `~/.cache/assistant/onnx/`. This picks the "
        "precision of a new index: an existing index opens with the precision it was built with",
        flag="--embed-backend", commands=(EVERY_COMMAND,), choices=("onnx-int8", "onnx", "torch"))
    # "title" helped on BEIR SciFact (train dense nDCG@10 0.681 -> 0.691) but lowered the news golden
    # set (17/20 answers instead of 18/20: every chunk of a long article gets the same words).
    embed_context: str = setting("none", "`title` embeds each chunk with its document title in front (helps short "
                                 "titled documents such as abstracts); an index keeps what it was created with",
                                 flag="--embed-context", commands=(EVERY_COMMAND,), choices=("none", "title"))
    # Retrieval. fusion, dense_weight, candidates, bm25_k1, bm25_b and bm25_title_weight: the best
    # configuration on BEIR SciFact train (`assistant bench retrieval --tune`, 540 trials), which also
    # lowers no news golden-set score (`benchmarks/golden_gate.py`); benchmarks/RESULTS.md.
    top_k: int = setting(5, "passages returned by a search; `ask --top-k N` answers from N passages",
                         flag="--top-k", commands=("search", "ask", "eval"))
    # ask and the API retrieve more than a search shows: the answerers pick one unit out of them.
    answer_passages: int = setting(8, "passages an answer is chosen from when the question names no top_k: the "
                                   "larger of this and `TOP_K`")
    candidates: int = setting(400, "passages each retriever (dense, keyword) hands to fusion")
    rrf_k: int = setting(60, "k of reciprocal rank fusion (`FUSION=rrf`)")
    near_duplicate_jaccard: float = setting(0.8, "word-set overlap (Jaccard) from which a passage is dropped as a "
                                            "near-duplicate of a better-ranked one")
    fusion: str = setting("relative", "how the dense and keyword lists combine: `relative` (weighted sum of min-max "
                          "normalized scores), `rrf` (weighted reciprocal rank fusion) or `zscore` (of standardized "
                          "scores)", choices=("relative", "rrf", "zscore"))
    dense_weight: float = setting(0.99, "weight of the dense list in fusion")
    bm25_weight: float = setting(1.0, "weight of the keyword list in fusion")
    doc_weight: float = setting(0.0, "extra fused score for a chunk: this times the fused scores of its document's "
                                "other chunks")
    prf_weight: float = setting(0.0, "dense pseudo-relevance feedback: the query vector plus this times the mean "
                                "vector of the top `PRF_DEPTH` chunks")
    prf_depth: int = setting(3, "chunks averaged for pseudo-relevance feedback")
    bm25_k1: float = setting(0.9, "BM25 (bm25s, Lucene variant) term-frequency saturation k1")
    bm25_b: float = setting(0.4, "BM25 length normalization b")
    bm25_title_weight: int = setting(1, "times a document's title terms count in the BM25 text of each of its "
                                     "chunks (PostgreSQL: fixed when a chunk is written)")
    keyword_rank: str = setting("bm25", "PostgreSQL store only: rank keyword matches by `bm25` (computed in SQL, as "
                                "the local store does) or PostgreSQL's `ts_rank`", choices=("bm25", "ts_rank"))
    index_type: str = setting("auto", "the vector index: `flat` (exact), `hnsw` (approximate), `hnsw_sq8` "
                              "(approximate, 8-bit scalar quantized) or `auto` (flat below `APPROX_THRESHOLD` "
                              "vectors, hnsw_sq8 from there on)", choices=("auto", "flat", "hnsw", "hnsw_sq8"))
    approx_threshold: int = setting(200_000, "vectors from which `INDEX_TYPE=auto` builds an approximate index")
    hnsw_m: int = setting(32, "HNSW: links per vector")
    hnsw_ef_construction: int = setting(80, "HNSW: candidates considered while building")
    hnsw_ef_search: int = setting(64, "HNSW: candidates considered while searching")
    ann_rerank: bool = setting(True, "re-score the approximate top 2k exactly from the flat vectors")
    # Extractive answers: "learned" does better on held-out SQuAD articles, "rules" on the news golden
    # set its weights were set on; benchmarks/RESULTS.md, "Answers on held-out articles".
    answerer: str = setting("rules", "`rules` or `learned`: see [Answers](#answers-and-abstention)",
                            choices=("rules", "learned"))
    max_answer_sentences: int = setting(1, "units (sentences, list items, table rows) quoted in an extractive answer")
    abstain_threshold: float = setting(-1.0, "abstain below this answer confidence (negative: the answerer's own; "
                                       "`rules`: 0.445); `assistant eval --calibrate` fits one to your golden set; "
                                       "see [Answers](#answers-and-abstention)", shown="the answerer's own")
    # Ingest.
    embed_batch_chunks: int = setting(256, "chunks encoded together at ingest")
    checkpoint_chunks: int = setting(4096, "chunks written between two commits of a long ingest")
    # What one file may expand to while it is read (assistant.loaders.Limits).
    max_file_mb: float = setting(512.0, "the largest file ingested, in MB")
    max_expanded_mb: float = setting(500.0, "bytes one file may decompress to, in MB; see "
                                     "[Limits](#limits-on-hostile-input)")
    max_text_mb: float = setting(100.0, "text extracted from one file, in millions of characters")
    max_zip_ratio: float = setting(100.0, "compression ratio of a .docx zip member")
    max_html_elements: int = setting(1_000_000, "tags in one HTML page")
    max_parse_seconds: float = setting(120.0, "parsing time of one .docx or PDF")
    # Server.
    max_upload_mb: float = setting(50.0, "one upload request, all its files together, in MB")
    api_key: str = setting("", "require `Authorization: Bearer KEY` on /api and KEY as the UI password (prefer "
                           "the variable: flags show in `ps`)", flag="--api-key", commands=("serve",), metavar="KEY",
                           shown="none: no auth, loopback only", secret=True)
    allowed_origins: str = setting("", "CORS: browser origins allowed to call the API, e.g. "
                                   "`https://portal.example.com` (comma-separated; the flag repeats)",
                                   flag="--allow-origin", commands=("serve",), metavar="ORIGIN", repeat=True)
    frame_ancestors: str = setting("", "the sources allowed to show /ui and /embed in a frame (CSP frame-ancestors; "
                                   "comma-separated; the flag repeats)", flag="--frame-ancestors",
                                   commands=("serve",), metavar="SOURCE", repeat=True, shown="`'self'`")
    # Generative answers (assistant.generate).
    backend: str = setting("extractive", "the answer backend: `extractive` (needs nothing), `openai` (any "
                           "OpenAI-compatible endpoint) or `local` (llama.cpp in-process via xllamacpp), or a plugin's chat backend",
                           flag="--backend", commands=LLM_COMMANDS, choices=("extractive", "openai", "local"),
                           plugin_choices="chat_backends")
    llm_model: str = setting("", "the LLM: a model name for `openai` (empty: the endpoint's first model), a GGUF "
                             "file or `smollm2` for `local`", flag="--model", commands=LLM_COMMANDS, metavar="MODEL")
    llm_base_url: str = setting("", "OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8080/v1`",
                                flag="--llm-base-url", commands=LLM_COMMANDS, metavar="URL",
                                shown="`$OPENAI_BASE_URL`, else api.openai.com")
    llm_api_key: str = setting("", "API key of the endpoint; never printed (prefer the variable)",
                               flag="--llm-api-key", commands=LLM_COMMANDS, metavar="KEY",
                               shown="`$OPENAI_API_KEY`", secret=True)
    llm_timeout: float = setting(60.0, "seconds per LLM request (and between streamed chunks)")
    llm_max_retries: int = setting(2, "retries on connection errors, 429 and 5xx, with exponential backoff")
    llm_threads: int = setting(1, "`local`: llama.cpp threads (they spin-wait: keep 1 on a shared 2-core machine)")
    llm_context_tokens: int = setting(2048, "the LLM's context window (`local`: the server's n_ctx)")
    llm_answer_tokens: int = setting(256, "room kept for the answer; also its max_tokens")
    llm_max_sources: int = setting(5, "passages offered to the LLM at most (then the context budget decides)")
    llm_temperature: float = setting(0.0, "LLM sampling temperature")
    llm_gate: bool = setting(True, "abstain without asking the LLM when retrieval confidence is below the "
                             "abstention threshold")
    prompts_dir: str = setting("", "a folder of your own prompt templates (answer.j2, condense.j2) overriding "
                               "prompts/", flag="--prompts-dir", commands=LLM_COMMANDS, metavar="DIR")
    verify_threshold: float = setting(0.77, "support score a cited generated sentence needs "
                                      "(`assistant eval --calibrate-verifier` fits one)")
    unsupported_policy: str = setting("mark", "generated sentences their sources do not support: `mark` "
                                      "([unverified]) or `remove`", choices=("mark", "remove"))
    fallback: str = setting("extractive", "when no generated sentence is supported: `extractive` or `abstain`",
                            choices=("extractive", "abstain"))

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then ASSISTANT_<NAME> environment variables, then explicit overrides."""
        values: dict[str, Any] = {}
        for row in SETTINGS:
            raw = os.environ.get(row.env)
            if raw is not None and row.name != "index_dir":  # index_dir's default reads its variable
                values[row.name] = _coerce(row, raw)
        return cls(**values).override(**overrides)

    def override(self, **overrides: Any) -> Settings:
        """A copy with the non-None overrides applied (None means 'keep the setting')."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "index_dir" in clean:
            clean["index_dir"] = Path(clean["index_dir"]).expanduser()
        return replace(self, **clean)


def _row(f: Field[Any], kind: type) -> Setting:
    return Setting(name=f.name, type=kind, default=None if f.default is MISSING else f.default,
                   **f.metadata["setting"])


_TYPES = get_type_hints(Settings)  # once: each call evaluates every field's annotation
SETTINGS: tuple[Setting, ...] = tuple(_row(f, _TYPES[f.name]) for f in fields(Settings))
BY_NAME: dict[str, Setting] = {row.name: row for row in SETTINGS}


def _coerce(row: Setting, raw: str) -> Any:
    try:
        if row.type is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return row.type(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {row.env}={raw!r} is not a {row.type.__name__}") from exc


# -- README.md's settings table -------------------------------------------------------------------

TABLE_HEADER = "| setting | default | meaning |"


def markdown_table() -> str:
    """Every setting as README.md lists it: environment name (and flag when it is not the name), default, help."""
    lines = [TABLE_HEADER, "|---|---|---|"]
    for row in SETTINGS:
        name = f"`{row.name.upper()}`"
        if row.flag and row.flag != "--" + row.name.replace("_", "-"):
            name += f" (`{row.flag}`)"
        lines.append(f"| {name} | {row.default_text()} | {row.help} |")
    return "\n".join(lines) + "\n"


def with_table(readme: str) -> str:
    """`readme` with its settings table (the one under TABLE_HEADER) replaced by `markdown_table()`."""
    lines = readme.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == TABLE_HEADER), None)
    if start is None:
        raise ValueError(f"no settings table (a line {TABLE_HEADER!r}) in the README")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[:start]) + markdown_table() + "".join(lines[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.settings", description="Every knob of the assistant, in one table.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the settings table as Markdown")
    group.add_argument("--readme", type=Path, metavar="README.md", help="rewrite the settings table in this file")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        args.readme.write_text(with_table(args.readme.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
