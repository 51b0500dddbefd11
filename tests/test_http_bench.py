"""Smoke test of the issue-6 HTTP benchmark orchestrator (``bench.http.orchestrator --quick``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.http.orchestrator import parse_wrk

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
        "bench.http.orchestrator",
        "--out",
        str(out),
        "--raw",
        str(tmp_path / "raw"),
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


def test_padded_batch_equals_rows_alone(tiny_checkpoint: Path) -> None:
    """The bare-model row and the LitServe peer pad batches: padding must not change answers."""
    from bench.http.padded import padded_top_k
    from models.checkpoint import load

    checkpoint = load(tiny_checkpoint)
    model, eos = checkpoint.model.eval(), checkpoint.vocabulary.eos_id
    rows = [[5, 6, 7, 8, 9], [10], [11, 12, 13]]
    batched = padded_top_k(model, eos, rows, 3)
    for row, answer in zip(rows, batched, strict=True):
        alone = padded_top_k(model, eos, [row], 3)[0]
        assert [i for i, _ in alone] == [i for i, _ in answer]
        assert [lp for _, lp in alone] == pytest.approx([lp for _, lp in answer], abs=1e-5)


def test_bodies_are_ptb_lines_of_10_to_20_words(tmp_path: Path) -> None:
    from bench.http.bodies import read_texts, write_bodies

    ptb = tmp_path / "ptb.txt"
    ptb.write_text(
        " ".join(["word"] * 12) + "\n" + "too short\n" + " ".join(["a", "<unk>"] * 6) + "\n"
    )
    texts = read_texts(write_bodies(ptb, tmp_path / "bodies.jsonl", count=5))
    assert texts == [" ".join(["word"] * 12)]


def test_tree_cpu_counts_children() -> None:
    import os

    from bench.http.targets_common import tree_cpu_s

    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert tree_cpu_s(os.getpid()) >= tree_cpu_s(child.pid) > 0.1
    finally:
        child.kill()
        child.wait()


def test_summary_ratios_and_targets() -> None:
    from bench.http.targets import summarize

    engine = {
        "predict": [{"throughput_rps": 1000.0, "p99": 50.0}],
        "bare": {"rows_per_s": 1200.0, "lone_step_ms": 2.0},
    }

    def http(rps: float, p99: float) -> dict[str, object]:
        return {
            "rps": rps,
            "latency_ms": {"p50": 40.0, "p99": p99},
            "server_cores": 1.7,
            "lone_p50_ms": 2.5,
        }

    rounds = [{"engine": engine, "http": http(900.0, 90.0), "litserve": http(450.0, 120.0)}]
    summary = summarize(rounds, None)
    assert summary["http_over_engine"] == pytest.approx(0.9)
    assert summary["http_over_litserve"] == pytest.approx(2.0)
    assert summary["lone_added_ms"] == pytest.approx(0.5)
    assert all(summary["met"].values())


def test_websocket_ratio_is_against_the_engine_fed_the_same_words() -> None:
    from bench.http.targets import summarize

    def loadgen(rate: float, p99: float, cores: float = 0.1) -> dict[str, object]:
        return {
            "ops": {"ws_feed": {"throughput_rps": rate, "latency_ms": {"p99": p99}}},
            "client": {"cpu_util_per_process": [cores / 2, cores / 2]},
        }

    ws = {
        "client": "c",
        "closed_python": loadgen(1900.0, 600.0, 0.3),  # the Python client, beside it
        "engine": {"feeds_per_s": 2500.0},  # the WebSocket client's words
        "engine_one_token": {"feeds_per_s": 3000.0},  # for reference only
        "closed": loadgen(2100.0, 500.0),
        "open": {**loadgen(1990.0, 80.0), "rate": 2000},
        "open_own": {**loadgen(1675.0, 60.0), "rate": 1680},  # 80 % of the closed loop
    }
    summary = summarize([], ws)
    assert summary["ws_over_engine"] == pytest.approx(0.84)
    assert summary["ws_engine_one_token_feeds_per_s"] == 3000.0
    assert summary["ws_python_client_over_engine"] == pytest.approx(0.76)
    assert (summary["ws_client_cores"], summary["ws_python_client_cores"]) == (0.1, 0.3)
    assert summary["met"] == {"ws >= 80% engine": True, "ws p99 <= 100 ms at 80%": True}
    assert (summary["ws_open_own_rate"], summary["ws_open_own_p99_ms"]) == (1680, 60.0)
    from bench.http.targets_report import render

    text = render({"summary": summary, "rounds": []})
    assert "At 80 % of the server's own closed-loop rate (1,680 feeds/s offered)" in text
    assert "the Python client's closed loop, same server: 1,900 feeds/s (76%)" in text
