"""The C WebSocket load client (``bench/wsload``) against a real server: closed and open
loop counts, error answers counted by code, a refused upgrade, the trace, and the words
it sends being the Python load generator's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.http import wsload
from bench.loadgen.texts import TextSource


def test_words_are_the_loadgen_stream(tmp_path: Path) -> None:
    path = wsload.write_words(tmp_path / "words.txt", count=200)
    source = TextSource(0)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [source.next_word() for _ in range(200)]
    assert any(line.endswith('\\n"') for line in lines)  # sentence ends stay escaped


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    binary = wsload.build()
    proc = subprocess.run([str(binary), "--connections", "3"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("not json\n")
    proc = subprocess.run([str(binary), "--words", str(empty)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no JSON string literals" in proc.stderr


def _run(server: Any, tmp_path: Path, *extra: str, sessions: int = 6, **kw: Any) -> dict:
    words = wsload.write_words(tmp_path / "words.txt", count=500)
    out = tmp_path / "out.json"
    argv = wsload.Load(server.url, sessions, **kw).command(words, out)
    subprocess.run([*argv, *extra], check=True, capture_output=True, timeout=60)
    return json.loads(out.read_text())


@pytest.mark.integration
def test_closed_loop_counts_answers(server: Any, tmp_path: Path) -> None:
    result = _run(server, tmp_path, duration_s=1.5, warmup_s=0.3)
    feeds = result["ops"]["ws_feed"]
    assert result["mode"] == "closed" and result["ops"]["ws_connect"]["ok"] == 6
    assert feeds["errors"] == 0 and feeds["ok"] > 50
    assert result["dispatched"] >= feeds["ok"]
    assert feeds["throughput_rps"] == pytest.approx(feeds["ok"] / 1.2, rel=0.01)
    latency = feeds["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert result["client"]["cpu_util_per_process"][0] >= 0


@pytest.mark.integration
def test_open_loop_sends_on_schedule_and_traces(server: Any, tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    result = _run(server, tmp_path, "--trace", str(trace), duration_s=1.5, warmup_s=0.5, rate=200)
    feeds = result["ops"]["ws_feed"]
    # Arrivals due in [0.5 s, 1.5 s) at 200/s: exactly 200, every one answered.
    assert result["mode"] == "open" and feeds["ok"] == 200 and feeds["errors"] == 0
    rows = [line.split() for line in trace.read_text().splitlines()]
    assert len(rows) == 200
    assert all(0.5 <= float(due) < 1.5 and float(ms) > 0 for due, ms in rows)


@pytest.mark.integration
def test_error_answers_are_counted_by_code(server: Any, tmp_path: Path) -> None:
    result = _run(server, tmp_path, "--k", "-1", duration_s=1.0, rate=50)
    feeds = result["ops"]["ws_feed"]
    assert feeds["ok"] == 0 and feeds["errors"] == 50
    assert feeds["errors_by_code"] == {"invalid_request": 50}


@pytest.mark.integration
def test_refused_upgrade_is_a_connect_error(server: Any, tmp_path: Path) -> None:
    result = _run(server, tmp_path, "--path", "/v1/nowhere", sessions=3, duration_s=0.5)
    connect = result["ops"]["ws_connect"]
    assert connect["ok"] == 0 and connect["errors"] == 3
    assert list(connect["errors_by_code"]) == ["http:403"]
    assert result["dispatched"] == 0


@pytest.mark.integration
def test_run_reads_like_a_loadgen_run(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` gives what the reports of ``bench.http`` read from the Python client."""
    from bench.http.parts import print_ws

    result = wsload.Load(server.url, 4, 1.0).run(tmp_path / "run.json")
    assert "error" not in result and result["ops"]["total"]["ok"] > 0
    print_ws("closed", result)
    assert f"{result['ops']['ws_feed']['throughput_rps']:9.1f} feeds/s" in capsys.readouterr().out
    failed = wsload.Load("http://127.0.0.1:1", 2, 0.5).run(tmp_path / "refused.json")
    assert failed["ops"]["ws_connect"]["errors_by_code"] == {"client:connect": 2}
