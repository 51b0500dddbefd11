"""``bench.http.api_scaling``: ratios against the first count, the target, the table."""

from __future__ import annotations

from bench.http.api_scaling import format_table, summarize
from bench.http.wrk import wrk_command


def _row(workers: int, rps: float, ws: float | None) -> dict:
    row: dict = {
        "workers": workers,
        "predict": {"rps": rps, "latency_ms": {"p99": 20.0}, "server_cores": workers + 0.5},
    }
    if ws is not None:
        row["ws"] = {"ops": {"ws_feed": {"throughput_rps": ws}}}
    return row


def test_ratios_are_against_the_first_count_and_the_target_reads_four_over_one() -> None:
    rows = [_row(1, 5000, 10000), _row(2, 9000, 15000), _row(4, 16000, None)]
    summary = summarize(rows)
    table = {r["workers"]: r for r in summary["table"]}
    assert table[2]["predict_over_first"] == 1.8
    assert table[4]["predict_over_first"] == 3.2
    assert table[2]["ws_over_first"] == 1.5
    assert table[4]["ws_feeds_per_s"] is None and table[4]["ws_over_first"] is None
    assert summary["met"] == {"predict 4 API >= 3x 1 API": True}
    assert summarize([_row(1, 5000, None), _row(4, 14000, None)])["met"] == {
        "predict 4 API >= 3x 1 API": False
    }


def test_no_target_without_one_and_four_processes() -> None:
    assert summarize([_row(2, 5000, None), _row(4, 9000, None)])["met"] == {}


def test_a_failed_websocket_run_has_no_rate() -> None:
    rows = [_row(1, 5000, 10000), _row(2, 9000, None)]
    rows[1]["ws"] = {"error": "timed out"}
    assert summarize(rows)["table"][1]["ws_feeds_per_s"] is None


def test_table_rows() -> None:
    text = format_table(summarize([_row(1, 5000, 10000), _row(4, 16000, 12000)]))
    lines = text.splitlines()
    assert lines[0].startswith("| API processes | predict req/s | × 1 API")
    assert lines[2] == "| 1 | 5,000 | 1.00× | 20.0 | 1.50 | 10,000 | 1.00× |"
    assert lines[3] == "| 4 | 16,000 | 3.20× | 20.0 | 4.50 | 12,000 | 1.20× |"


def test_wrk_threads() -> None:
    assert "-t2" in wrk_command("http://x", 64, 5)  # this 2-CPU box's default
    assert "-t4" in wrk_command("http://x", 256, 5, threads=4)
    assert "-t1" in wrk_command("http://x", 1, 5, threads=4)  # never more than connections
