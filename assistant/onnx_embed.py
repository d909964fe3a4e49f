"""ONNX Runtime encoders for a sentence-transformers model folder: fp32 (`embed_backend="onnx"`) and
dynamically quantized int8 (`embed_backend="onnx-int8"`).

Built offline from the packaged model, once per model (and, for int8, per CPU instruction set), into
`$XDG_CACHE_HOME/assistant/onnx/<model>-<fp32|isa>/` (~/.cache/...): the transformer is exported to
ONNX with torch's TorchScript exporter; for int8 it is then dynamically quantized with ONNX Runtime
(int8 weights per channel, symmetric; uint8 activations; the settings of optimum's
`AutoQuantizationConfig.avx512_vnni` / `avx512` / `avx2`, which sentence-transformers'
`export_dynamic_quantized_onnx_model` uses). The build happens in a temporary folder that is renamed
into place, so a crash or a concurrent build never leaves a half-written model behind.

fp32 gives the same vectors as torch (cosine 1.00000) at a fraction of the per-call overhead: one
query encodes in about 4.5 ms instead of 11.6 ms on one thread (benchmarks/RESULTS.md). int8 is the
default backend. Dynamic int8 quantization scales activations per tensor, i.e. over a whole padded
batch, so int8 encodes one text per call (`MAX_BATCH`): a vector never depends on its batch mates.

Tried and dropped (benchmarks/RESULTS.md): fusing the graph first with onnxruntime's transformer
optimizer (Attention/SkipLayerNorm/BiasGelu, then QAttention) was 10-12% slower than letting the
session fuse this graph at load, and per-tensor weights lose accuracy (cosine 0.94).

Only `onnxruntime` and `onnx` are needed (no optimum: optimum-onnx pins transformers < 4.58).
Pooling (mean or CLS, from the model's `1_Pooling/config.json`) and L2 normalization run in numpy.

`OnnxEncoder` offers the part of the `SentenceTransformer` interface `Embedder` uses: `encode`,
`get_embedding_dimension`, `max_seq_length` and `tokenizer`; plus `encode_units` (chunk vectors and,
from the same forward pass, the vectors of character spans inside each text: `pool_spans`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from assistant.settings import user_cache_dir
from assistant.word_pieces import FastTokenizer, pool_spans, private_tokenizer, read_json

BUILD_VERSION = 1  # bump when the export or quantization recipe changes: old builds are then rebuilt
MODEL_FILES = {"fp32": "model_fp32.onnx", "int8": "model_int8.onnx"}
MODEL_FILE = MODEL_FILES["int8"]
BUILD_FILE = "build.json"
builds = 0  # exports done by this process (tests check that a second construction reuses the cache)


# Texts per ONNX Runtime call when the caller does not say. Small batches are faster on CPU, not
# slower: MiniLM's activations for a few 256-piece texts stay in cache, and the memory arena stays
# small. Measured on 1,619 SciFact chunks, 2 workers (benchmarks/RESULTS.md, "Ingest speed and memory"):
# int8 135 chunks/s at 32, 212-224 at 1-4, peak RSS 599 -> 179 MB; fp32 67 at 32, 88-96 at 1-4.
# int8 always runs one text per call, whatever the caller asks for: dynamic quantization scales
# activations per call, so in a batch a vector would depend on its batch mates (cosine 0.994 to
# the same text alone). One per call, a text's vector is the same at ingest, in a query batch or alone.
ENCODE_BATCH = {"fp32": 2, "int8": 1}
MAX_BATCH = {"fp32": 1 << 30, "int8": 1}


def detect_isa(cpuinfo: str | None = None) -> str:
    """'avx512_vnni', 'avx512' or 'avx2' from the CPU flags (/proc/cpuinfo); 'generic' otherwise."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "generic"


def default_onnx_cache_dir() -> Path:
    """`$ASSISTANT_ONNX_CACHE`, else `$XDG_CACHE_HOME/assistant/onnx` (~/.cache/assistant/onnx)."""
    return user_cache_dir("onnx", "ASSISTANT_ONNX_CACHE")


def _fingerprint(model_path: Path, isa: str, precision: str) -> dict[str, Any]:
    """What a build depends on: a changed model file or recipe means a rebuild."""
    files = {}
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"):
        f = model_path / name
        if f.is_file():
            files[name] = f.stat().st_size
    import onnxruntime

    return {"build_version": BUILD_VERSION, "precision": precision, "isa": isa, "source": str(model_path.resolve()),
            "files": files, "onnxruntime": onnxruntime.__version__}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[-80:]


def onnx_model_path(model_name: str, model_path: Path, precision: str = "int8", isa: str | None = None,
                    cache_dir: Path | str | None = None) -> Path:
    """The ONNX file for this model (int8: and this CPU), built (once) if the cache lacks it."""
    if precision not in MODEL_FILES:
        raise ValueError(f"unknown ONNX precision {precision!r}: use one of {', '.join(MODEL_FILES)}")
    isa = (isa or detect_isa()) if precision == "int8" else "any"
    model_file = MODEL_FILES[precision]
    root = Path(cache_dir).expanduser() if cache_dir else default_onnx_cache_dir()
    target = root / f"{_safe(model_name)}-{isa if precision == 'int8' else precision}"
    expected = _fingerprint(model_path, isa, precision)
    try:
        if json.loads((target / BUILD_FILE).read_text()) == expected and (target / model_file).is_file():
            return target / model_file
    except (OSError, ValueError):
        pass
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        _build(model_path, tmp, isa, precision)
        (tmp / BUILD_FILE).write_text(json.dumps(expected, indent=1))
        if target.exists():  # stale (other recipe or model): replace it
            old = root / f".{target.name}-old-{os.getpid()}"
            os.rename(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process renamed its build into place first: use that one
            if not (target / model_file).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / model_file


def _build(model_path: Path, folder: Path, isa: str, precision: str) -> None:
    global builds
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager")
    model.eval()

    class _Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out[0]

    dummy = torch.ones((2, 8), dtype=torch.long)
    fp32 = folder / MODEL_FILES["fp32"]
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python code in the model
        torch.onnx.export(_Wrapper(model), (dummy, dummy, torch.zeros_like(dummy)), str(fp32),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # optimum's avx512(_vnni) config: int8 weights; avx2: uint8 weights. Both per channel, symmetric
        # weights, asymmetric uint8 activations, full range (plain quantize_dynamic defaults lose more).
        weight_type = QuantType.QUInt8 if isa == "avx2" else QuantType.QInt8
        quantize_dynamic(str(fp32), str(folder / MODEL_FILES["int8"]), per_channel=True, reduce_range=False,
                         weight_type=weight_type,
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        fp32.unlink()
    builds += 1


class OnnxEncoder:
    """Tokenize, run the ONNX transformer (fp32 or int8), pool, normalize: like `SentenceTransformer.encode`.

    Speed (see benchmarks/RESULTS.md): texts are tokenized once (a private copy of the fast tokenizer,
    one batch call), sorted by token count (longest first) and cut into batches padded only to
    their own longest member. The ONNX session runs with ONE intra-op thread; `threads` > 1 runs
    that many batches at once, one per worker thread (onnxruntime releases the GIL), instead of
    splitting each small matrix product over threads. For MiniLM's small matrices that is about 1.3x
    faster per CPU-second, and on a shared machine it does not stall on thread barriers when a
    core is taken. A call with a single batch (a query) runs in the caller's thread.
    """

    def __init__(self, model_name: str, model_path: Path, threads: int | None = None,
                 cache_dir: Path | str | None = None, isa: str | None = None, precision: str = "int8") -> None:
        import onnxruntime as ort

        self.onnx_path = onnx_model_path(model_name, model_path, precision, isa, cache_dir)
        # Public tokenizer (Embedder.count_tokens, the chunker); `encode` uses its own copy, so a
        # chunker thread counting tokens never shares tokenizer state with an encode in flight.
        self.tokenizer = FastTokenizer(model_path)
        st_config = read_json(model_path / "sentence_bert_config.json")
        self.max_seq_length = int(st_config.get("max_seq_length") or self.tokenizer.model_max_length)
        self.do_lower_case = bool(st_config.get("do_lower_case", False))
        self._tok = private_tokenizer(self.tokenizer, self.max_seq_length)
        self._tok_lock = threading.Lock()
        self._pad_id = int(self.tokenizer.pad_token_id or 0)
        pooling = read_json(model_path / "1_Pooling" / "config.json")
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens", True):
            self.pooling = "mean"
        else:
            raise ValueError(f"{model_path}: only mean or CLS pooling is supported by the ONNX backend")
        self._dim = int(pooling.get("word_embedding_dimension") or 0)  # 0: probed after the session loads
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = max(1, int(threads))
        self.batch_size = ENCODE_BATCH[precision]
        self.max_batch = MAX_BATCH[precision]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism is across batches (self.workers), see above
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        if not self._dim:
            self._dim = int(self._forward([self._token_ids(["dimension probe"])[0]]).shape[1])

    def get_embedding_dimension(self) -> int:
        return self._dim

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids with special tokens, truncated to max_seq_length (no padding)."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        with self._tok_lock:
            if hasattr(self._tok, "encode_batch_fast"):  # tokenizers >= 0.20: no character offsets
                encodings = self._tok.encode_batch_fast(texts)
            else:  # pragma: no cover - older tokenizers
                encodings = self._tok.encode_batch(texts)
        return [e.ids for e in encodings]

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        """Pooled (not normalized) vectors of one batch, padded to its longest member."""
        return self._pooled(*self._hidden(ids))

    def _hidden(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(last_hidden_state, attention mask) of one batch, padded to its longest member."""
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        return hidden, mask

    def _pooled(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            return np.asarray(hidden[:, 0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        return np.asarray((hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None), dtype=np.float32)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-encode")
            return self._pool

    def encode(self, texts: Sequence[str], batch_size: int | None = None, convert_to_numpy: bool = True,
               normalize_embeddings: bool = True, show_progress_bar: bool = False, **_: Any) -> np.ndarray:
        """Unit vectors (if normalize_embeddings) in input order. Batches (`batch_size`, default
        `self.batch_size`) hold texts of similar token count (sorted, longest first), so padding stays low."""
        batch_size = min(batch_size or self.batch_size, self.max_batch)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        ids = self._token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # stable: ties keep input order
        step = max(1, batch_size)
        batches = [order[start : start + step] for start in range(0, len(order), step)]
        out = np.empty((len(texts), self._dim), dtype=np.float32)

        def run(idx: list[int]) -> None:
            vectors = self._forward([ids[i] for i in idx])
            if normalize_embeddings:
                vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vectors

        if self.workers == 1 or len(batches) == 1:
            for idx in batches:
                run(idx)
        else:
            for _done in self._executor().map(run, batches):  # re-raises a worker's error here
                pass
        return out

    def encode_units(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                     batch_size: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(chunk vectors, per text its spans' vectors) from one forward pass per text.

        The chunk vectors are `encode`'s (same tokens, batches and pooling). A span's vector is the
        mean of the last hidden states of the word pieces whose character offsets overlap it,
        L2-normalized (`pool_spans`). Same batching and threading as `encode`; the extra work is
        the tokenizer's offsets and the pooling."""
        batch_size = min(batch_size or self.batch_size, self.max_batch)
        texts = list(texts)
        if len(spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32), []
        encodings = self._encodings(texts)
        ids = [e.ids for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # as in encode
        step = max(1, batch_size)
        batches = [order[start : start + step] for start in range(0, len(order), step)]
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        units: list[np.ndarray] = [np.zeros((0, self._dim), np.float32)] * len(texts)

        def run(idx: list[int]) -> None:
            hidden, mask = self._hidden([ids[i] for i in idx])
            vectors = self._pooled(hidden, mask)
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vectors
            for row, i in enumerate(idx):
                e = encodings[i]
                units[i] = pool_spans(hidden[row, : len(e.ids)], e.offsets, e.special_tokens_mask, spans[i],
                                      vectors[row])

        if self.workers == 1 or len(batches) == 1:
            for idx in batches:
                run(idx)
        else:
            for _done in self._executor().map(run, batches):
                pass
        return out, units

    def _encodings(self, texts: list[str]) -> list[Any]:
        """Tokenizer encodings with character offsets (relative to each text), truncated like `_token_ids`."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        with self._tok_lock:
            return list(self._tok.encode_batch(texts))

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
