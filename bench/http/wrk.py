"""Run wrk and read its output: requests/s, latency percentiles, non-2xx and socket errors.

One module for everything that knows wrk's command line and text format, shared by the
orchestrator's parts and ``bench.http.targets``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.serverproc import ROOT

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_predict.lua"
WRK_PACED_SCRIPT = HERE / "wrk_paced.lua"
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, latency p50/p75/p90/p99 (ms), requests, non-2xx and socket errors."""
    out: dict[str, Any] = {
        "rps": None,
        "latency_ms": {},
        "requests": 0,
        "non2xx": 0,
        "non2xx_by_status": {},
        "socket_errors": {},
    }
    if m := re.search(r"Requests/sec:\s*([\d.]+)", text):
        out["rps"] = float(m.group(1))
    for pct, value, unit in re.findall(
        r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE
    ):
        out["latency_ms"][f"p{float(pct):g}"] = _ms(value, unit)
    if m := re.search(r"^\s*(\d+) requests in", text, re.MULTILINE):
        out["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text):
        out["non2xx"] = int(m.group(1))
    if m := re.search(r"non-2xx by status:(.*)$", text, re.MULTILINE):
        out["non2xx_by_status"] = {s: int(n) for s, n in re.findall(r"(\d+)=(\d+)", m.group(1))}
        out["non2xx"] = max(out["non2xx"], sum(out["non2xx_by_status"].values()))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        out["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    out["errors"] = out["non2xx"] + sum(out["socket_errors"].values())
    return out


def wrk_command(
    url: str,
    connections: int,
    duration_s: float,
    script: Path | None = None,
    threads: int | None = None,
) -> list[str]:
    """wrk's command line; ``threads`` defaults to 2 (one core of this 2-CPU box each)."""
    threads = max(1, min(threads or 2, connections))
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script or WRK_SCRIPT),
        url,
    ]


def run_wrk(
    url: str,
    connections: int,
    duration_s: float,
    raw: Path | None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    cmd = wrk_command(url, connections, duration_s, script, threads)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=duration_s + 60,
        env={**os.environ, **(env or {})},
    )
    text = proc.stdout + proc.stderr
    if raw is not None:
        prefix = "".join(f"{k}={v} " for k, v in (env or {}).items())
        raw.write_text(prefix + " ".join(cmd) + "\n\n" + text)
    result = parse_wrk(text)
    result.update(connections=connections, command=" ".join(cmd), rc=proc.returncode)
    return result
