"""Settings with defaults, environment overrides and per-call overrides.

Every knob lives here so the CLI, the API and tests agree on names and defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "ASSISTANT_"


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
class Settings:
    index_dir: Path = field(default_factory=default_index_dir)
    # Where the index lives: "" = the local folder index_dir (FAISS + SQLite); a
    # postgresql://user:password@host:port/database URL = PostgreSQL with pgvector (index_dir then
    # only holds uploads and feedback). See README "PostgreSQL store".
    store: str = field(default="", repr=False)
    # Embedding model: a registered name (see assistant.embed.MODELS) or a folder path.
    model: str = "all-MiniLM-L6-v2"
    # How the model runs: "onnx-int8" (int8 weights in ONNX Runtime, the default: about 2.2x fp32's
    # encode rate, within 1 point of fp32 on held-out answers, 0.0013 below it on SciFact test
    # nDCG@10; benchmarks/RESULTS.md, "Ingest speed and memory"), "onnx" (fp32 through ONNX
    # Runtime: the same vectors as "torch") or "torch" (the fp32 sentence-transformers model). The
    # ONNX files are built once into ~/.cache/assistant/onnx. This picks the precision of a NEW index:
    # an existing index opens with the precision it was built with (`index.index_backend`).
    embed_backend: str = "onnx-int8"
    # What each chunk's vector is computed from: "none" (the chunk alone) or "title" (the document
    # title, then the chunk, unless the chunk already starts with it). "title" helped on BEIR SciFact
    # (train dense nDCG@10 0.681 -> 0.691) but lowered the news golden set (17/20 answers instead of
    # 18/20: every chunk of a long article gets the same words), so it is opt-in. An index keeps the
    # choice it was created with (its manifest records it; indexes from before this setting: "none").
    embed_context: str = "none"
    # Chunking. `chunk_tokenizer` says what chunk_tokens and chunk_overlap count: "cl100k" (OpenAI's
    # cl100k_base tokens; a chunk the embedding model would truncate is split further) or "model" (the
    # model's own word pieces, capped at what one input holds: 254 for MiniLM). 160/32 cl100k stayed
    # the default after a sweep on SciFact train and held-out answers (benchmarks/RESULTS.md,
    # "Chunk geometry"): model-piece chunks of 160 gave nDCG within noise for 4% more chunks; 192
    # and 254 lowered nDCG.
    chunk_tokenizer: str = "cl100k"
    chunk_tokens: int = 160
    chunk_overlap: int = 32
    # Retrieval.
    top_k: int = 5
    candidates: int = 400  # per retriever, before fusion (tuned with the fusion below)
    rrf_k: int = 60
    near_duplicate_jaccard: float = 0.8
    # Fusion of the dense and BM25 lists: "relative" (weighted sum of min-max normalized scores),
    # "rrf" (weighted reciprocal rank fusion, k = rrf_k) or "zscore" (of standardized scores).
    # fusion, dense_weight, candidates, bm25_k1, bm25_b and bm25_title_weight: the best configuration
    # on BEIR SciFact train (`assistant bench retrieval --tune`, 540 trials), which also lowers no news
    # golden-set score (`benchmarks/golden_gate.py`); see benchmarks/RESULTS.md, "Retrieval on BEIR SciFact".
    fusion: str = "relative"
    dense_weight: float = 0.99
    bm25_weight: float = 1.0
    # Extra fused score for a chunk: doc_weight x the fused scores of its document's other chunks.
    doc_weight: float = 0.0
    # Dense pseudo-relevance feedback: query vector + prf_weight x mean of the top prf_depth chunks.
    prf_weight: float = 0.0
    prf_depth: int = 3
    # BM25 (bm25s, Lucene variant) over content_terms of title x bm25_title_weight + chunk text.
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    bm25_title_weight: int = 1
    # PostgreSQL store only: rank keyword matches by "bm25" (computed in SQL, as above) or PostgreSQL's
    # "ts_rank" (idf-weighted). Title terms count bm25_title_weight times, fixed when a chunk is written.
    keyword_rank: str = "bm25"
    # Vector index: "flat" (exact), "hnsw" (approximate, float32), "hnsw_sq8" (approximate, 8-bit
    # scalar quantized) or "auto" (flat below approx_threshold vectors, hnsw_sq8 from there on).
    index_type: str = "auto"
    approx_threshold: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ann_rerank: bool = True  # re-score the approximate top 2k exactly from the flat vectors
    # Extractive answers: "rules" (hand-weighted sentence scores, the default for now) or "learned"
    # (a scorer fitted on public QA data, calibrated abstention: assistant.answer_model). "learned"
    # does better on held-out SQuAD articles, "rules" on the news golden set its weights were set on;
    # see benchmarks/RESULTS.md, "Answers on held-out articles".
    answerer: str = "rules"
    max_answer_sentences: int = 1
    # Abstain when the answer's confidence is below this; negative (the default): the answerer's own
    # ("learned": the model's, chosen on held-out training data; "rules": 0.445).
    # `assistant eval --calibrate` fits one to your own golden set.
    abstain_threshold: float = -1.0
    # Ingest.
    embed_batch_chunks: int = 256
    checkpoint_chunks: int = 4096
    max_file_mb: float = 512.0
    # What one file may expand to while it is read (assistant.loaders.Limits; README "Limits"):
    # bytes decompressed from a .docx's zip members or one PDF stream, characters of text extracted,
    # a zip member's compression ratio, tags in one HTML page (parsed whole), and parsing time.
    max_expanded_mb: float = 500.0
    max_text_mb: float = 100.0
    max_zip_ratio: float = 100.0
    max_html_elements: int = 1_000_000
    max_parse_seconds: float = 120.0
    # Server.
    max_upload_mb: float = 50.0
    # Generative answers (assistant.generate): "extractive" (default, needs nothing), "openai"
    # (any OpenAI-compatible endpoint) or "local" (llama.cpp in-process via xllamacpp).
    backend: str = "extractive"
    llm_model: str = ""  # openai: model name (empty: the endpoint's first model); local: GGUF path or "smollm2"
    llm_base_url: str = ""  # empty: $OPENAI_BASE_URL, else api.openai.com
    llm_api_key: str = field(default="", repr=False)  # empty: $OPENAI_API_KEY; never printed
    llm_timeout: float = 60.0  # seconds per request (and between streamed chunks)
    llm_max_retries: int = 2  # on connection errors, 429 and 5xx, with exponential backoff
    llm_threads: int = 1  # local: llama.cpp threads (they spin-wait: keep 1 on a shared 2-core box)
    llm_context_tokens: int = 2048  # the model's context window (local: the server's n_ctx)
    llm_answer_tokens: int = 256  # room kept for the answer; also its max_tokens
    llm_max_sources: int = 5  # passages offered to the model at most (then the context budget decides)
    llm_temperature: float = 0.0
    llm_gate: bool = True  # abstain without asking the LLM when retrieval confidence < abstain_threshold
    prompts_dir: str = ""  # a folder of your own templates (answer.j2, condense.j2) overriding prompts/
    verify_threshold: float = 0.77  # support score a cited sentence needs (`eval --calibrate-verifier`)
    unsupported_policy: str = "mark"  # unsupported generated sentences: "mark" or "remove"
    fallback: str = "extractive"  # when no generated sentence is supported: "extractive" or "abstain"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then ASSISTANT_<NAME> environment variables, then explicit overrides."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and f.name != "index_dir":
                values[f.name] = _coerce(f.name, raw, type(getattr(cls(), f.name)))
        settings = cls(**values)
        return settings.override(**overrides)

    def override(self, **overrides: Any) -> Settings:
        """A copy with the non-None overrides applied (None means 'keep the setting')."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "index_dir" in clean:
            clean["index_dir"] = Path(clean["index_dir"]).expanduser()
        return replace(self, **clean)


def _coerce(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {ENV_PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}") from exc
