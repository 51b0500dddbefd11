"""Smoke test of the issue-6 HTTP benchmark orchestrator (``bench.http_bench --quick``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.http_bench import parse_wrk

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8001
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.52ms    2.29ms  1.05s    87.88%
    Req/Sec     2.56k   257.08     2.90k    60.00%
  Latency Distribution
     50%  212.00us
     75%    2.26ms
     90%    4.21ms
     99%    1.20s
  5153 requests in 1.01s, 458.01KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   5102.54
Transfer/sec:    454.93KB
71 distinct bodies; non-2xx by status: 429=5 503=2
"""


def test_parse_wrk() -> None:
    out = parse_wrk(WRK_OUTPUT)
    assert out["rps"] == pytest.approx(5102.54)
    assert out["latency_ms"]["p50"] == pytest.approx(0.212)
    assert out["latency_ms"]["p90"] == pytest.approx(4.21)
    assert out["latency_ms"]["p99"] == pytest.approx(1200.0)
    assert out["requests"] == 5153
    assert out["non2xx"] == 7
    assert out["non2xx_by_status"] == {"429": 5, "503": 2}
    assert out["socket_errors"] == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert out["errors"] == 10


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_quick_run_writes_report(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "http"
    cmd = [
        sys.executable,
        "-m",
        "bench.http_bench",
        "--out",
        str(out),
        "--quick",
        "--model",
        str(tiny_checkpoint),
        "--levels",
        "1,4",
        "--ws-levels",
        "10",
        "--duration-s",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    doc = json.loads((out / "results.json").read_text())
    assert doc["machine"]["nproc"] >= 1
    parts = doc["parts"]
    for tag in ("batching_on", "batching_off"):
        levels = parts["predict"][tag]["levels"]
        assert [r["connections"] for r in levels] == [1, 4]
        assert all(r["rps"] and r["rps"] > 0 for r in levels)
        assert all(r["non2xx"] == 0 for r in levels)
    assert [r["connections"] for r in parts["echo"]["levels"]] == [1, 4]
    ws = parts["ws"]["levels"][0]
    assert ws["sessions"] == 10 and ws["ops"]["ws_feed"]["ok"] > 0
    rated = parts["ws_rates"]["levels"][0]
    assert rated["rate"] == 20 and rated["ops"]["ws_feed"]["ok"] > 0
    overload = parts["overload"]
    assert overload["target_rate"] == pytest.approx(2 * overload["saturation_rps"])
    summary = overload["summary"]
    assert summary["http_5xx"] == 0 and summary["only_200_429"]
    assert summary["answered"] > 0 and overload["probe"]["ops"]["predict"]["ok"] > 0
    assert overload["readyz"]["polls"] >= 1

    report = (out / "REPORT.md").read_text()
    for heading in (
        "# lstm-serve HTTP benchmark",
        "## 1. `POST /v1/predict`",
        "## 2. HTTP ceiling",
        "## 3. WebSocket streaming",
        "## 3b. WebSocket at fixed rates",
        "## 4. Open-loop overload",
        "speed-up",
        "feeds/s",
        "share of 429",
        "readiness held",
    ):
        assert heading in report, heading
    assert "--quick" in report
    assert (out / "throughput.png").stat().st_size > 0
    assert (out / "latency.png").stat().st_size > 0
