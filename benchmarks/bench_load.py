"""Load benchmark of the HTTP server: many concurrent clients asking questions for a fixed time.

Prints figures; it is not a test. Run from the project root, e.g.

    .venv/bin/python benchmarks/bench_load.py                          # ../shared/corpus/news, 50 clients, 30 s
    .venv/bin/python benchmarks/bench_load.py ~/docs --clients 20 --duration 60
    .venv/bin/python benchmarks/bench_load.py --index-dir /tmp/sf      # an existing index (no ingest)
    .venv/bin/python benchmarks/bench_load.py --endpoint stream        # POST /api/ask/stream (SSE)

What it does:
1. Ingests the corpus folder into a temporary index (unless --index-dir names an existing one).
2. Starts the real server, `assistant serve`, as a child process on 127.0.0.1 (a free port) and
   waits for /healthz. All traffic stays on loopback.
3. Runs --clients concurrent clients (one httpx.AsyncClient, one connection each) for --duration
   seconds: each asks the next question of the list (golden questions of ../shared/golden when the
   corpus is the news corpus, with their follow-up history; else questions made from the indexed
   titles), waits for the whole answer, then asks again. Clients start at different offsets.
4. Prints requests/s, latency p50/p95/p99/max, errors (non-200, transport errors, SSE error
   events or answers without a final event), the load average and both processes' CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import (  # noqa: E402  (first: offline switches, project on sys.path)
    PROJECT_ROOT,
    SHARED,
    free_port,
    log,
    stop_server,
    wait_until_healthy,
)

DEFAULT_CORPUS = SHARED / "corpus" / "news"
DEFAULT_GOLDEN = SHARED / "golden" / "news_golden.jsonl"

import httpx  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def questions_for(golden: Path | None, titles: list[str]) -> list[dict[str, Any]]:
    """Request bodies: golden questions (with history) when available, else questions about titles."""
    items: list[dict[str, Any]] = []
    if golden is not None and golden.exists():
        for line in golden.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                items.append({"question": row["question"], "history": row.get("history", [])})
    if not items:
        templates = ["What does {} say?", "Summarize {}.", "Who is mentioned in {}?", "When did {} happen?"]
        items = [{"question": t.format(title), "history": []} for title in titles[:50] for t in templates]
    return items or [{"question": "What are these documents about?", "history": []}]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.first_token: list[float] = []
        self.errors: dict[str, int] = {}
        self.details: list[str] = []  # the first few, for diagnosis
        self.abstained = 0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if detail and len(self.details) < 5:
            self.details.append(f"{kind}: {detail}")


async def ask_once(client: httpx.AsyncClient, body: dict[str, Any], endpoint: str, results: Results) -> None:
    started = time.perf_counter()
    try:
        if endpoint == "ask":
            r = await client.post("/api/ask", json=body)
            if r.status_code != 200:
                results.error(f"HTTP {r.status_code}")
                return
            answer = r.json()
        else:
            answer = None
            async with client.stream("POST", "/api/ask/stream", json=body) as r:
                if r.status_code != 200:
                    results.error(f"HTTP {r.status_code}")
                    return
                kind, first_token = "", None
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                        if kind == "token" and first_token is None:
                            first_token = time.perf_counter() - started
                    elif line.startswith("data:") and kind == "final":
                        answer = json.loads(line[5:])
                    elif line.startswith("data:") and kind == "error":
                        results.error("SSE error event")
                        return
            if not answer or "answer" not in answer:
                results.error("no final event")
                return
            if first_token is not None:
                results.first_token.append(first_token)
        results.abstained += bool(answer.get("abstained"))
        results.latencies.append(time.perf_counter() - started)
    except httpx.HTTPError as exc:
        results.error(type(exc).__name__, f"{exc!r} after {time.perf_counter() - started:.2f} s")


async def run_load(base_url: str, bodies: list[dict[str, Any]], clients: int, duration: float, endpoint: str,
                   results: Results, timeout: float) -> float:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        for body in bodies[:3]:  # warm-up, not counted
            await ask_once(client, body, endpoint, Results())
        stop_at = time.perf_counter() + duration

        async def worker(n: int) -> None:
            i = n * max(1, len(bodies) // clients) + n
            while time.perf_counter() < stop_at:
                await ask_once(client, bodies[i % len(bodies)], endpoint, results)
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS, help="folder to index (default: %(default)s)")
    parser.add_argument("--index-dir", type=Path, help="use this existing index instead of indexing the corpus")
    parser.add_argument("--golden", type=Path, help="golden JSONL whose questions to ask (default: the news golden set "
                        "for the news corpus)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default: 30)")
    parser.add_argument("--endpoint", choices=["ask", "stream"], default="ask")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--json", type=Path, dest="json_out", help="also write the figures here")
    args = parser.parse_args()

    from assistant.index import IndexStore

    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ASSISTANT_API_KEY", None)
    index_dir = args.index_dir or work / "index"
    if not IndexStore.read_manifest(index_dir):
        if not args.corpus.is_dir():
            log(f"{args.corpus} is not a folder; pass a corpus folder or an existing --index-dir")
            return 2
        log(f"indexing {args.corpus} into {index_dir}")
        subprocess.run([sys.executable, "-m", "assistant.cli", "--index-dir", str(index_dir), "ingest",
                        str(args.corpus), "--no-progress"], check=True, env=env, cwd=PROJECT_ROOT)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server_log = work / "server.log"
    log(f"starting `assistant serve` on {base_url} (log: {server_log})")
    with open(server_log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "--index-dir", str(index_dir), "serve",
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
    try:
        if not wait_until_healthy(base_url, server, timeout=180, interval=0.2):
            log("the server did not become ready:\n" + server_log.read_text()[-3000:])
            return 1
        listing = httpx.get(base_url + "/api/documents", timeout=30).json()
        stats = listing["stats"]
        golden = args.golden or (DEFAULT_GOLDEN if args.corpus.resolve() == DEFAULT_CORPUS.resolve() else None)
        bodies = questions_for(golden, [d["title"] for d in listing["documents"]])
        random.Random(0).shuffle(bodies)
        log(f"index: {stats['documents']} documents, {stats['chunks']} chunks; {len(bodies)} distinct questions; "
            f"{args.clients} clients for {args.duration:g} s on {args.endpoint}")

        results = Results()
        server_cpu0, client_cpu0 = cpu_seconds(server.pid), time.process_time()
        elapsed = asyncio.run(run_load(base_url, bodies, args.clients, args.duration, args.endpoint, results,
                                       args.timeout))
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        load1 = os.getloadavg()[0]
    finally:
        stop_server(server)

    ok = len(results.latencies)
    errors = sum(results.errors.values())
    lat_ms = [x * 1000 for x in results.latencies]
    figures: dict[str, Any] = {
        "endpoint": args.endpoint, "clients": args.clients, "duration_s": round(elapsed, 1),
        "documents": stats["documents"], "chunks": stats["chunks"],
        "requests_ok": ok, "errors": errors, "error_kinds": results.errors,
        "requests_per_s": round((ok + errors) / elapsed, 1),
        "p50_ms": round(percentile(lat_ms, 50), 1), "p95_ms": round(percentile(lat_ms, 95), 1),
        "p99_ms": round(percentile(lat_ms, 99), 1), "max_ms": round(max(lat_ms, default=float("nan")), 1),
        "mean_ms": round(statistics.fmean(lat_ms), 1) if lat_ms else None,
        "abstained": results.abstained,
        "server_cpu_s": round(server_cpu, 1), "client_cpu_s": round(client_cpu, 1), "load_avg_1m": round(load1, 2),
        "cpus": os.cpu_count(),
    }
    if results.first_token:
        ttft = [x * 1000 for x in results.first_token]
        figures.update(first_token_p50_ms=round(percentile(ttft, 50), 1), first_token_p95_ms=round(percentile(ttft, 95), 1))

    print(f"{args.clients} clients, {elapsed:.1f} s, POST /api/{'ask' if args.endpoint == 'ask' else 'ask/stream'} "
          f"over {stats['documents']} documents / {stats['chunks']} chunks")
    print(f"requests/s {figures['requests_per_s']}  ({ok} ok, {errors} errors{' ' + str(results.errors) if errors else ''})")
    print(f"latency ms  p50 {figures['p50_ms']}  p95 {figures['p95_ms']}  p99 {figures['p99_ms']}  "
          f"max {figures['max_ms']}  mean {figures['mean_ms']}")
    if results.first_token:
        print(f"first token ms  p50 {figures['first_token_p50_ms']}  p95 {figures['first_token_p95_ms']}")
    print(f"cpu s: server {figures['server_cpu_s']}, load generator {figures['client_cpu_s']} "
          f"(of {elapsed * (os.cpu_count() or 1):.0f} available); load average {figures['load_avg_1m']}")
    for detail in results.details:
        print("  error: " + detail)
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
