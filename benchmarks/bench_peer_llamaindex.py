"""The LlamaIndex side of benchmarks/bench_peer.py. Runs in the peer's own virtual env (never in ours:
it imports nothing of the project); bench_peer.py starts it, one process per phase.

    python bench_peer_llamaindex.py ingest --docs DIR --persist DIR --model PATH --k 5 --out JSON
    python bench_peer_llamaindex.py query  --docs DIR --persist DIR --model PATH --k 5 --queries JSON
                                           --warmup 3 --out JSON [--rankings]

The pipeline is LlamaIndex's documented default hybrid setup: SimpleDirectoryReader on the folder
(exclude_hidden=False, see ingest()),
VectorStoreIndex.from_documents with the default transformations (SentenceSplitter defaults),
HuggingFaceEmbedding on the local MiniLM folder, FAISS IndexFlatIP(384) in a FaissVectorStore,
BM25Retriever.from_defaults(docstore=...) and QueryFusionRetriever(mode="reciprocal_rerank",
num_queries=1, use_async=False). `ingest` builds it and persists it the documented way
(storage_context.persist, bm25.persist); `query` loads the persisted index and docstore, rebuilds
the BM25 retriever from the docstore (the same call as at ingest; untimed), then times
fusion_retriever.retrieve(q) per query.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                      ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

DIM = 384


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] peer: {msg}", file=sys.stderr, flush=True)


def embed_model(model: str) -> Any:
    from llama_index.core import Settings
    from llama_index.core.llms import MockLLM
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    # The default Settings.llm is OpenAI (its package is not installed and there is no network);
    # num_queries=1 never calls the LLM, so a MockLLM stands in and changes nothing retrieved.
    Settings.llm = MockLLM()
    embed = HuggingFaceEmbedding(model_name=model)
    Settings.embed_model = embed
    return embed


def fusion_retriever(index: Any, k: int) -> tuple[Any, Any]:
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.retrievers.bm25 import BM25Retriever

    vector_retriever = index.as_retriever(similarity_top_k=k)
    bm25 = BM25Retriever.from_defaults(docstore=index.docstore, similarity_top_k=k)
    fusion = QueryFusionRetriever([vector_retriever, bm25], mode="reciprocal_rerank", num_queries=1,
                                  use_async=False, similarity_top_k=k)
    return fusion, bm25


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    embed = embed_model(args.model)
    t1 = time.perf_counter()
    # exclude_hidden=False: LlamaIndex counts a file as hidden when any part of its absolute path
    # starts with "." (the default work folder is under ~/.cache), and would find no files at all.
    # The corpus folder holds no dotfiles, so this changes nothing else.
    documents = SimpleDirectoryReader(str(args.docs), exclude_hidden=False).load_data()
    t2 = time.perf_counter()
    vector_store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(DIM))
    storage_context = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex.from_documents(documents, storage_context=storage_context, embed_model=embed)
    t3 = time.perf_counter()
    _fusion, bm25 = fusion_retriever(index, args.k)
    t4 = time.perf_counter()
    index.storage_context.persist(persist_dir=str(args.persist))
    bm25.persist(str(args.persist / "bm25"))
    t5 = time.perf_counter()
    stages.update(model_load_s=t1 - t0, read_s=t2 - t1, split_embed_faiss_s=t3 - t2, bm25_s=t4 - t3, persist_s=t5 - t4)
    return {"documents": len(documents), "nodes": len(index.docstore.docs), "faiss_vectors": int(vector_store._faiss_index.ntotal),
            "stages": {k: round(v, 2) for k, v in stages.items()}}


def load_index(args: argparse.Namespace, embed: Any) -> Any:
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    vector_store = FaissVectorStore.from_persist_dir(str(args.persist))
    storage_context = StorageContext.from_defaults(vector_store=vector_store, persist_dir=str(args.persist))
    return load_index_from_storage(storage_context, embed_model=embed)


def truncation(embed: Any, nodes: list[Any]) -> dict[str, Any]:
    """Word pieces of what each node embeds (text + the metadata LlamaIndex puts in front of it),
    against the model's max_seq_length: longer inputs are cut there without a warning."""
    from llama_index.core.schema import MetadataMode

    model = embed._model
    limit = int(model.max_seq_length)
    lengths = [len(model.tokenizer(n.get_content(metadata_mode=MetadataMode.EMBED))["input_ids"]) for n in nodes]
    text_only = [len(model.tokenizer(n.get_content(metadata_mode=MetadataMode.NONE))["input_ids"]) for n in nodes]
    return {"max_seq_length": limit, "nodes": len(nodes), "over_limit": sum(n > limit for n in lengths),
            "over_limit_text_only": sum(n > limit for n in text_only),
            "wordpieces_median": statistics.median(lengths) if lengths else 0, "wordpieces_max": max(lengths, default=0),
            "wordpieces_cut": sum(max(0, n - limit) for n in lengths), "wordpieces_total": sum(lengths),
            "example_embedded_text_head": nodes[0].get_content(metadata_mode=MetadataMode.EMBED)[:300] if nodes else ""}


def query(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    embed = embed_model(args.model)
    index = load_index(args, embed)
    fusion, _bm25 = fusion_retriever(index, args.k)
    setup_s = time.perf_counter() - t0
    queries = json.loads(args.queries.read_text(encoding="utf-8"))
    for q in queries[: args.warmup]:
        fusion.retrieve(q["text"])
    latencies: list[float] = []
    rankings: dict[str, list[str]] = {}
    for q in queries:
        start = time.perf_counter()
        nodes = fusion.retrieve(q["text"])
        latencies.append((time.perf_counter() - start) * 1000)
        if args.rankings:
            names = (Path(str(n.node.metadata.get("file_name", ""))).stem for n in nodes)
            rankings[q["id"]] = list(dict.fromkeys(names))
    out: dict[str, Any] = {"setup_s": round(setup_s, 2), "latencies_ms": latencies, "torch_threads": torch.get_num_threads(),
                           "bm25": "rebuilt from the persisted docstore (BM25Retriever.from_defaults), untimed"}
    if args.rankings:
        out["rankings"] = rankings
    else:
        out["truncation"] = truncation(embed, list(index.docstore.docs.values()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=["ingest", "query"])
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--persist", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--queries", type=Path)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rankings", action="store_true", help="return document rankings (file stems), no truncation check")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = ingest(args) if args.phase == "ingest" else query(args)
    args.out.write_text(json.dumps(result), encoding="utf-8")
    log(f"{args.phase} done")


if __name__ == "__main__":
    main()
