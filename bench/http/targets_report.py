"""Markdown tables from ``bench.http.targets``'s JSON, for BENCHMARKS.md.

.venv/bin/python -m bench.http.targets_report bench/results/targets.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _round_rows(index: int, r: dict[str, Any]) -> list[str]:
    e, p = r["engine"], r["engine"]["predict"][0]
    rows = [
        f"| {index} | (a) bare model, padded batches of 64 | {_f(e['bare']['rows_per_s'])} | - "
        f"| - | 1 thread | - | {_f(e['load_before'], 2)} |",
        f"| {index} | (b) engine alone (ids, 1 torch thread) | {_f(p['throughput_rps'])} "
        f"| {_f(p['p50'], 1)} | {_f(p['p99'], 1)} | - | - | {_f(e['load_before'], 2)} |",
    ]
    for key, label in (("http", "(c) lstm-serve over HTTP"), ("litserve", "(d) LitServe batched")):
        h = r[key]
        rows.append(
            f"| {index} | {label} | {_f(h['rps'])} | {_f(h['latency_ms'].get('p50'), 1)} "
            f"| {_f(h['latency_ms'].get('p99'), 1)} | {_f(h['server_cores'], 2)} "
            f"| {_f(h['client_cores'], 2)} | {_f(h['load_before'], 2)} |"
        )
    return rows


def render(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    lines = [
        "| round | variant | req/s | p50 ms | p99 ms | server cores | client cores | load before |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for index, r in enumerate(doc["rounds"], 1):
        lines += _round_rows(index, r)
    if "http_over_engine" in s:
        lines += [
            "",
            f"Means: HTTP / engine alone **{s['http_over_engine']:.0%}**, HTTP / LitServe "
            f"**{s['http_over_litserve']:.2f}×**, p99 {_f(s['http_p99_ms'], 1)} vs "
            f"{_f(s['litserve_p99_ms'], 1)} ms, server **{s['http_server_cores']:.2f} cores**; "
            "lone request over HTTP (wrk, 1 connection, p50) "
            f"{_f(s['lone_http_p50_ms'], 2)} ms vs the bare model step "
            f"{_f(s['bare_step_ms'], 2)} ms (**{s['lone_added_ms']:+.2f} ms**).",
        ]
    if "ws_feeds_per_s" in s:
        lines.append(
            f"WebSocket, 1,000 sessions back to back: **{_f(s['ws_feeds_per_s'])} feeds/s** vs "
            f"the engine's own {_f(s['ws_engine_feeds_per_s'])} of the same words "
            f"(**{s['ws_over_engine']:.0%}**; one PTB token per feed: "
            f"{_f(s.get('ws_engine_one_token_feeds_per_s'))}); "
            f"open loop at {_f(s['ws_open_rate'])} feeds/s offered (80 %): answered "
            f"{_f(s['ws_open_achieved'])}/s, p99 **{_f(s['ws_open_p99_ms'], 1)} ms**."
        )
        if "ws_python_client_feeds_per_s" in s:
            lines.append(
                f"Load client: {s['ws_client']} ({s['ws_client_cores']:.2f} cores); the Python "
                f"client's closed loop, same server: {_f(s['ws_python_client_feeds_per_s'])} "
                f"feeds/s ({s['ws_python_client_over_engine']:.0%}) for "
                f"{s['ws_python_client_cores']:.2f} cores of client CPU."
            )
        if "ws_open_own_rate" in s:
            lines.append(
                f"At 80 % of the server's own closed-loop rate ({_f(s['ws_open_own_rate'])} "
                f"feeds/s offered): answered {_f(s['ws_open_own_achieved'])}/s, p99 "
                f"{_f(s['ws_open_own_p99_ms'], 1)} ms."
            )
    lines += ["", "| target | met |", "| --- | --- |"]
    lines += [f"| {k} | {'met' if v else '**missed**'} |" for k, v in s["met"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
