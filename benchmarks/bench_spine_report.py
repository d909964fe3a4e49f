"""The printed report of benchmarks/bench_spine.py (the same figures go to --json)."""

from __future__ import annotations

from typing import Any


def print_report(results: dict[str, Any]) -> None:
    env = results["environment"]
    print(f"\n== bench_spine  {results['started_at']}  ({env['cpus']} CPUs, "
          f"torch threads {env['torch_threads']}, load avg at start {env['loadavg_start']})")
    print(f"model load {results['model_load_s']} s (excluded); "
          f"warm-up {results.get('warm_up_s', '-')} s (excluded)")
    if "ingest" in results:
        ing = results["ingest"]
        print(f"\nIngest  {ing['docs']} docs -> {ing['chunks']} chunks in {ing['seconds']} s = "
              f"{ing['chunks_per_s']} chunks/s  (cpu/wall {ing['cpu_per_wall']}, failed {ing['failed']})")
        if "chunk_only" in results:
            c = results["chunk_only"]
            print(f"  chunking alone: {c['seconds']} s for {c['chunks']} chunks")
        for raw in results["raw"]:
            print(f"Raw encode ({raw['label']}): {raw['chunks']} chunks in {raw['seconds']} s = "
                  f"{raw['chunks_per_s']} chunks/s  (cpu/wall {raw['cpu_per_wall']})")
        if "raw_grouped" in results:
            g = results["raw_grouped"]
            print(f"Raw encode in groups of {g['group']}: {g['chunks_per_s']} chunks/s")
        for label, ratio in results["ratio_ingest_over_raw"].items():
            print(f"Ratio ingest/raw ({label}): {ratio}  (target >= 0.9)")
        cpu_ratio = [round(ing["chunks_per_cpu_s"] / r["chunks_per_cpu_s"], 3) for r in results["raw"]]
        print(f"Ratio per CPU-second (less sensitive to other load): {cpu_ratio}")
        pad = results["padding"]
        print(f"Padding: {pad['real_tokens']} real tokens; padded {pad['raw_padded_tokens']} raw vs "
              f"{pad['ingest_padded_tokens']} ingest ({pad['ingest_encode_calls']} encode calls) -> "
              f"ratio expected from padding alone {pad['expected_ratio_from_padding']}")
        print(f"stored vs raw vectors: {results['vector_agreement']}"
              + (f"; pre-chunked == stored: {results['pre_chunked_equals_stored']}"
                 if "pre_chunked_equals_stored" in results else ""))
    if "search" in results:
        idx = results["index"]
        print(f"\nQueries on {idx['documents']} docs / {idx['chunks']} chunks "
              f"(Assistant warm-up {results['assistant_warm_up_s']} s, excluded)")
        for name in ("search", "ask"):
            r = results[name]
            print(f"{name:6s} n={r['n']}  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  mean {r['mean_ms']} ms"
                  f"  max {r['max_ms']} ms  (cpu/wall {r['cpu_per_wall']})")
        for label, key in (("medians", "stage_median_ms"), ("p95", "stage_p95_ms")):
            stages = results["ask"][key]
            print(f"ask stage {label} (ms): " + ", ".join(f"{k} {v}" for k, v in stages.items()))
        print(f"ask p50 target < 60 ms: {'met' if results['ask']['p50_ms'] < 60 else 'NOT met'}")
    print(f"\nload avg at end {results['environment']['loadavg_end']}; total wall {results['total_s']} s")
