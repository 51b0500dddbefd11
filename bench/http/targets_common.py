"""What every part of ``bench.http.targets`` measures with: the server tree's CPU from
/proc, a wait for a quiet machine, the engine alone in its own interpreter, and the two
servers (lstm-serve, the LitServe peer) started with their logs under ``RAW``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.serverproc import ROOT, ServerProcess, free_port, start_app, start_server

RAW = ROOT / "bench" / "out" / "targets"
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """utime+stime (s) of ``root`` and every live descendant (children, grandchildren)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * TICK_S)
    tree, total, grew = {root}, 0.0, True
    while grew:
        more = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def wait_quiet(max_load: float, patience_s: float) -> float:
    """Wait (up to ``patience_s``) for the 1-minute load average to drop below ``max_load``."""
    deadline = time.monotonic() + patience_s
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def engine_alone(
    args: argparse.Namespace, tag: str, parts: str, extra: list[str]
) -> dict[str, Any]:
    """``bench.micro.engine_bench`` in a subprocess (its own interpreter, like the engine)."""
    load = wait_quiet(args.max_load, args.patience_s)
    out = RAW / f"{tag}.json"
    cmd = [sys.executable, "-m", "bench.micro.engine_bench", "--parts", parts]
    cmd += ["--threads", "1", "--bodies", str(args.bodies), "--json", str(out), *extra]
    subprocess.run(cmd, cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["load_before"] = load
    return result


def lstm_serve(
    args: argparse.Namespace, tag: str, env: dict[str, str] | None = None
) -> ServerProcess:
    full = {"LSTM_SERVE_MODEL_PATH": str(args.model), "LSTM_SERVE_LOG_LEVEL": "warning"}
    return start_server({**full, **(env or {})}, RAW / f"server-{tag}.log", 180)


def litserve(args: argparse.Namespace, tag: str) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.http.litserve_app", "--port", str(port)]
    return start_app([*cmd, "--model", str(args.model)], RAW / f"server-{tag}.log", port, "/health")
