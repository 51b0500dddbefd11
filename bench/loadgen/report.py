"""Human-readable tables and the ``--json`` file, from the results that ``runner.run`` makes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.loadgen.stats import TOTAL

COLUMNS = ("p50", "p90", "p99", "p99.9", "max")


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _latency_cells(latency_ms: dict[str, float]) -> list[str]:
    return [f"{_num(latency_ms[c], 2):>9}" for c in COLUMNS]


def describe(result: dict[str, Any]) -> str:
    """One line saying what was run: scenario, loop, users or rate, processes, window."""
    if result["mode"] == "open":
        load = f"open loop at {result['rate']:g}/s over {result['concurrency']} connections"
    else:
        load = f"closed loop, {result['concurrency']} users"
    return (
        f"{result['scenario']}: {load}, {result['processes']} process(es), "
        f"window {result['window_s']:.1f} s, {result['dispatched']} sent"
    )


def op_table(result: dict[str, Any]) -> str:
    """Throughput, latency percentiles (ms) and error count per operation, then details."""
    head = f"{'operation':<16}{'ok':>9}{'errors':>8}{'req/s':>10}" + "".join(
        f"{c + ' ms':>9}" for c in COLUMNS
    )
    lines = [describe(result), head, "-" * len(head)]
    for name, op in result["ops"].items():
        rps = _num(op["throughput_rps"])
        lines.append(
            f"{name:<16}{op['ok']:>9}{op['errors']:>8}{rps:>10}"
            + "".join(_latency_cells(op["latency_ms"]))
        )
        if "ttft_ms" in op and name != TOTAL:
            lines.append(f"{'  first word':<43}" + "".join(_latency_cells(op["ttft_ms"])))
    for name, op in result["ops"].items():
        if name == TOTAL:
            continue
        if op.get("tokens"):
            rates = op.get("stream_words_per_s", {})
            lines.append(
                f"{name}: {op['tokens']} words, {_num(op['tokens_per_s'])} words/s in "
                f"all; per stream p50 {_num(rates.get('p50'))}, "
                f"p10 {_num(rates.get('p10'))} words/s"
            )
        if op["errors"]:
            codes = ", ".join(f"{c}={n}" for c, n in op["errors_by_code"].items())
            statuses = ", ".join(f"{s}={n}" for s, n in op["errors_by_status"].items())
            lines.append(
                f"{name} errors by code: {codes} (by HTTP status: {statuses}; 0 = no HTTP answer)"
            )
    lines.append(client_line(result))
    if "schedule_lag_ms" in result:
        lag = result["schedule_lag_ms"]
        lines.append(
            f"send lag behind schedule: p50 {_num(lag['p50'], 2)} ms, "
            f"p99 {_num(lag['p99'], 2)} ms, max {_num(lag['max'], 2)} ms"
        )
    return "\n".join(lines)


def client_line(result: dict[str, Any]) -> str:
    """The client's own CPU use, so a reader can tell whether the client limited the run."""
    client = result["client"]
    utils = client["cpu_util_per_process"]
    per = ", ".join(f"{u:.0%}" for u in utils)
    lag = client["loop_lag_ms"]
    line = (
        f"client CPU ({result.get('loop', 'asyncio')}): {client['cpu_s']:.1f} s = "
        f"{sum(utils):.2f} cores (per process: {per}); "
        f"event-loop lag p50 {_num(lag['p50'], 1)} ms, p99 {_num(lag['p99'], 1)} ms"
    )
    if client["saturated"]:
        line += (
            "\n  ! the client was busy or starved of CPU (a core near 100 % or loop lag p99 "
            "> 20 ms): it may be the bottleneck; add --processes or free CPU"
        )
    return line


def sweep_table(results: list[dict[str, Any]]) -> str:
    """One row per level of a sweep: achieved throughput vs latency of the ``total`` row."""
    head = (
        f"{'level':>8}{'req/s':>10}"
        + "".join(f"{c + ' ms':>9}" for c in COLUMNS)
        + (f"{'errors':>8}{'client CPU':>12}")
    )
    lines = [head, "-" * len(head)]
    for result in results:
        total = result["ops"][TOTAL]
        level = result["rate"] if result["mode"] == "open" else result["concurrency"]
        cpu = sum(result["client"]["cpu_util_per_process"])
        lines.append(
            f"{level:>8g}{_num(total['throughput_rps']):>10}"
            + "".join(_latency_cells(total["latency_ms"]))
            + f"{total['errors']:>8}{cpu:>11.0%}"
            + (" !" if result["client"]["saturated"] else "")
        )
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, config: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """``{"config": ..., "runs": [result, ...]}``; one run unless sweeping."""
    doc = {"config": config, "runs": results}
    path.write_text(json.dumps(_clean(doc), indent=2) + "\n")
