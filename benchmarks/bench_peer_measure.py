"""Timed child processes for benchmarks/bench_peer.py: each phase runs under /usr/bin/time -v
(wall, peak RSS, CPU), with the machine's load before and after and the CPU other processes
used meanwhile, so a busy machine is noticed, not mistaken for a slow side."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_common import log

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
BUSY_LOAD = 1.0  # 1-minute load above this before a phase: warn
BUSY_OTHERS = 0.25  # cores used by other processes during a phase above this: warn


class PhaseError(RuntimeError):
    pass


# -- machine load -----------------------------------------------------------------------------


def cpu_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields_ = [int(x) for x in handle.readline().split()[1:]]
    idle = fields_[3] + (fields_[4] if len(fields_) > 4 else 0)
    return (sum(fields_[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# -- timed phases -----------------------------------------------------------------------------


@dataclass
class Phase:
    """One timed child process: /usr/bin/time -v figures plus the machine's load around it."""

    label: str
    wall_s: float = 0.0
    max_rss_mb: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    others_cores: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        out = []
        if self.load_before > BUSY_LOAD:
            out.append(f"1-min load {self.load_before} before (part may be the previous phase's own tail)")
        if self.others_cores > BUSY_OTHERS:
            out.append(f"other processes used {self.others_cores:.2f} cores during it")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "wall_s": self.wall_s, "max_rss_mb": self.max_rss_mb, "user_s": self.user_s,
                "sys_s": self.sys_s, "load1_before": self.load_before, "load1_after": self.load_after,
                "other_processes_cores": self.others_cores, "warnings": self.warnings(), **self.result}


def parse_time_v(text: str) -> dict[str, float]:
    """Wall, peak RSS and CPU times from /usr/bin/time -v output."""
    def grab(pattern: str) -> str:
        match = re.search(pattern, text)
        if not match:
            raise PhaseError(f"no {pattern!r} in /usr/bin/time output")
        return match.group(1)

    parts = [float(p) for p in grab(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*([\d:.]+)").split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"wall_s": wall, "max_rss_kb": float(grab(r"Maximum resident set size \(kbytes\):\s*(\d+)")),
            "user_s": float(grab(r"User time \(seconds\):\s*([\d.]+)")),
            "sys_s": float(grab(r"System time \(seconds\):\s*([\d.]+)"))}


def run_timed(label: str, cmd: Sequence[str], env: dict[str, str], logs: Path, stdout: Path | None = None) -> Phase:
    """Run `cmd` under /usr/bin/time -v; its stderr (and stdout unless given) go to logs/<label>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path, time_path = logs / f"{label}.log", logs / f"{label}.time"
    phase = Phase(label, load_before=load1())
    busy0 = cpu_busy_seconds()
    with open(log_path, "wb") as err, open(stdout or log_path, "ab") as out:
        rc = subprocess.run(["/usr/bin/time", "-v", "-o", str(time_path), *cmd], env=env, stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL).returncode
    busy = cpu_busy_seconds() - busy0
    phase.load_after = load1()
    if rc != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise PhaseError(f"{label} exited with {rc}; last lines of {log_path}:\n{tail}")
    t = parse_time_v(time_path.read_text(encoding="utf-8"))
    phase.wall_s, phase.user_s, phase.sys_s = round(t["wall_s"], 2), t["user_s"], t["sys_s"]
    phase.max_rss_mb = round(t["max_rss_kb"] / 1024, 1)
    phase.others_cores = round(max(0.0, busy - t["user_s"] - t["sys_s"]) / max(t["wall_s"], 1e-3), 2)
    for w in phase.warnings():
        log(f"WARNING {label}: {w}: the acceptance asks for a quiet machine")
    return phase


def child_env(one_thread: bool) -> dict[str, str]:
    """The environment minus ASSISTANT_* overrides (ours runs with the shipped defaults), offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if one_thread:
        env.update(ONE_THREAD)
    return env
