"""The figures of benchmarks/bench_peer.py: per-side summaries over the rounds, ratios against the
targets, and the printed table and peer notes."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench_peer_measure import Phase

TARGETS = {"docs_per_s": (">=", 2.0), "peak_rss": ("<=", 1.0), "search_p50": ("<=", 0.6)}


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 2)


def median_of(phases: Sequence[Phase], attr: str) -> float | None:
    values = [float(getattr(p, attr)) for p in phases]
    return round(statistics.median(values), 2) if values else None


def side_summary(ingests: Sequence[Phase], queries: Sequence[Phase], docs: int) -> dict[str, Any]:
    """Median ingest over the rounds; latencies pooled over the rounds' query phases."""
    if not ingests:
        return {}
    wall = median_of(ingests, "wall_s")
    search = [ms for p in queries for ms in p.result.get("latencies_ms", [])]
    ask = [ms for p in queries for ms in p.result.get("ask_latencies_ms", [])]
    return {"ingest_wall_s": wall, "docs_per_s": round(docs / wall, 2) if wall else None,
            "chunks": ingests[-1].result.get("chunks"), "peak_rss_mb": median_of(ingests, "max_rss_mb"),
            "search_p50_ms": pct(search, 50), "search_p95_ms": pct(search, 95),
            "ask_p50_ms": pct(ask, 50), "ask_p95_ms": pct(ask, 95),
            "query_process_rss_mb": median_of(queries, "max_rss_mb"),
            "truncation": queries[-1].result.get("truncation") if queries else None}


def ratios(peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    values = {"docs_per_s": ratio(ours.get("docs_per_s"), peer.get("docs_per_s")),
              "peak_rss": ratio(ours.get("peak_rss_mb"), peer.get("peak_rss_mb")),
              "search_p50": ratio(ours.get("search_p50_ms"), peer.get("search_p50_ms"))}
    out: dict[str, Any] = {}
    for name, value in values.items():
        op, target = TARGETS[name]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[name] = {"ratio": value, "target": f"{op} {target}", "met": met}
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    peer, ours, rat = report["peer"].get("summary", {}), report["ours"]["summary"], report.get("ratios", {})
    trunc_p, trunc_o = peer.get("truncation") or {}, ours.get("truncation") or {}
    rows = [("ingest wall s (median)", peer.get("ingest_wall_s"), ours.get("ingest_wall_s"), None),
            ("docs/s", peer.get("docs_per_s"), ours.get("docs_per_s"), rat.get("docs_per_s")),
            ("chunks embedded", peer.get("chunks"), ours.get("chunks"), None),
            ("chunks over 256 word pieces", trunc_p.get("over_limit"), trunc_o.get("over_limit"), None),
            ("peak RSS MB, ingest (median)", peer.get("peak_rss_mb"), ours.get("peak_rss_mb"), rat.get("peak_rss")),
            ("search p50 ms (peer: fusion)", peer.get("search_p50_ms"), ours.get("search_p50_ms"), rat.get("search_p50")),
            ("search p95 ms (peer: fusion)", peer.get("search_p95_ms"), ours.get("search_p95_ms"), None),
            ("ask p50 ms (ours only)", None, ours.get("ask_p50_ms"), None),
            ("ask p95 ms (ours only)", None, ours.get("ask_p95_ms"), None),
            ("RSS MB, query process (median)", peer.get("query_process_rss_mb"), ours.get("query_process_rss_mb"), None)]
    quality = report.get("quality")
    if quality:
        rows.append((f"nDCG@10 test ({quality['documents']} docs, {quality['queries']} q)",
                     quality.get("peer", {}).get("ndcg@10"), quality["ours"].get("ndcg@10"), None))
    lines = [f"{report['docs']} SciFact docs, {report['rounds']} round(s), {report['queries']} queries, k={report['k']}",
             f"{'':<34} {'LlamaIndex':>11} {'ours':>9}   ratio ours/peer (target)"]
    for name, p, o, r in rows:
        digits = 4 if name.startswith("nDCG") else 1
        extra = ""
        if r:
            mark = {True: "met", False: "NOT met", None: ""}[r["met"]]
            extra = f"   {fmt(r['ratio'], 2)} ({r['target']}) {mark}"
        lines.append(f"{name:<34} {fmt(p, digits):>11} {fmt(o, digits):>9}{extra}")
    if quality:
        lines.append(f"(nDCG: top {quality['k']} nodes/chunks per query, documents ranked by their best one)")
    if report["warnings"]:
        busy = sorted({w.split(":", 1)[0] for w in report["warnings"]})
        lines.append(f"WARNING: busy machine during {len(busy)} phase(s) ({', '.join(busy)}; max other-process CPU "
                     f"{report['max_other_cores']} cores, max 1-min load {report['max_load1']}): not acceptance "
                     "figures, which need a quiet machine (details in --json)")
    return "\n".join(lines)


def print_peer_notes(report: dict[str, Any]) -> None:
    peer = report["peer"]
    if peer["skipped"]:
        print("peer: SKIPPED (see the messages above)")
        return
    versions = peer["versions"] or {}
    print("peer versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    took = "" if peer["venv_install_s"] is None else f" (install took {peer['venv_install_s']} s)"
    print(f"peer venv: {'reused' if peer['venv_reused'] else 'installed'}{took}")
    print(f"peer query phase: {peer['query_phase']}")
    trunc = (peer["summary"] or {}).get("truncation") or {}
    if trunc:
        print(f"peer truncation: {trunc['over_limit']} of {trunc['nodes']} nodes exceed {trunc['max_seq_length']} word "
              f"pieces as embedded (metadata + text; {trunc.get('over_limit_text_only')} on text alone), median "
              f"{trunc['wordpieces_median']}, max {trunc['wordpieces_max']}; the model drops the rest")
