"""Which int8 MatMul costs the most accuracy: cosine to fp32 when one node (or a set) stays fp32.

The shipped int8 model quantizes the 36 weight MatMuls of MiniLM's 6 layers dynamically
(`assistant/onnx_embed.py`). This script re-quantizes the cached fp32 export with
`nodes_to_exclude`, embeds SciFact documents one text per call (as the product does) and prints the
mean and minimum cosine to the fp32 vectors and the encode seconds. Results: benchmarks/RESULTS.md
("Two more ways to close that gap").

    .venv/bin/python benchmarks/bench_int8_nodes.py --docs 200             # every node alone
    .venv/bin/python benchmarks/bench_int8_nodes.py --docs 200 --set 0,1,2  # FFN outputs of layers 0-2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import bench_common  # noqa: F401  (offline switches, project on sys.path)
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from assistant.embed import resolve_model_path
from assistant.onnx_embed import onnx_model_path
from assistant.word_pieces import FastTokenizer

KINDS = ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
         "intermediate/dense", "output/dense")


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess: ort.InferenceSession, ids: list[list[int]]) -> tuple[np.ndarray, float]:
    out, started = [], time.perf_counter()
    for row in ids:
        x = np.asarray([row], dtype=np.int64)
        hidden = sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)})[0][0]
        v = hidden.mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return np.stack(out), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beir", type=Path, default=bench_common.DEFAULT_BEIR)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--set", default="", help="comma-separated layers whose FFN output MatMul stays fp32 "
                        "(default: try every one of the 36 nodes alone)")
    args = parser.parse_args()
    model_path = resolve_model_path("all-MiniLM-L6-v2")
    fp32 = onnx_model_path("all-MiniLM-L6-v2", model_path, "fp32")
    tokenizer = FastTokenizer(model_path).backend_tokenizer
    tokenizer.enable_truncation(256)
    docs = [json.loads(line) for line in (args.beir / "corpus.jsonl").open(encoding="utf-8")]
    sample = random.Random(0).sample(docs, args.docs)
    ids = [tokenizer.encode(f"{d['title']}\n\n{d['text']}").ids for d in sample]
    reference, seconds = embed(session(fp32), ids)
    print(f"fp32: {seconds:.2f} s")
    if args.set:
        trials = {f"FFN out fp32 in layers {args.set}": [f"/inner/encoder/layer.{n}/output/dense/MatMul"
                                                          for n in args.set.split(",")]}
    else:
        trials = {"all quantized": []} | {f"layer {n} {k}": [f"/inner/encoder/layer.{n}/{k}/MatMul"]
                                          for n in range(6) for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        for label, exclude in trials.items():
            path = Path(tmp) / "model.onnx"
            quantize_dynamic(str(fp32), str(path), per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
                             nodes_to_exclude=exclude,
                             extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
            vectors, seconds = embed(session(path), ids)
            cos = (vectors * reference).sum(axis=1)
            print(f"{label}: cosine mean {cos.mean():.4f} min {cos.min():.4f}, {seconds:.2f} s", flush=True)


if __name__ == "__main__":
    main()
