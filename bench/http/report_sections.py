"""``REPORT.md``'s header and its closed-loop predict and echo sections (parts 1 and 2).

Each section reads only ``results.json``'s document and returns its Markdown lines.
"""

from __future__ import annotations

from typing import Any

from bench.http.report_format import (
    ECHO_SHARE_TARGET,
    HEADLINE_LEVEL,
    SPEEDUP_TARGET,
    by_level,
    fmt_num,
    fmt_pct,
    headline,
    mark,
    part_section,
    ratio_of,
)


def header_lines(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    s = doc["settings"]
    load = m.get("loadavg_at_start")
    return [
        "# lstm-serve HTTP benchmark (issue 6)",
        "",
        f"- command: `{doc['command']}`",
        f"- date: {doc['started_utc']} to {doc.get('finished_utc', '?')} (UTC)",
        f"- machine: {m['nproc']} CPUs (nproc), {m['cpu_model']}; torch {m['torch_version']} "
        f"with {m['torch_threads']} threads; Python {m['python']}; {m['platform']}",
        f"- client: {m['wrk'] or 'wrk'}; `lstm-serve-bench` with "
        f"{s['client_processes']} processes; open files soft limit {doc['nofile'].get('soft')}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load) if load else '-'}; "
        "client and server share the same cores",
        f"- model: `{s['model']}`; {s['duration_s']:g} s per level, {s['warmup_s']:g} s wrk "
        "warm-up after each server start" + (" (**--quick smoke run**)" if s["quick"] else ""),
        "",
    ]


def predict_section(doc: dict[str, Any]) -> list[str]:
    part, lines = part_section(
        doc, "predict", "## 1. `POST /v1/predict` under wrk: batching on vs off"
    )
    if part is None:
        return lines
    on = by_level(part["batching_on"]["levels"])
    off = by_level(part["batching_off"]["levels"])
    lines += [
        "`wrk -t2 -cN --latency -s bench/http/wrk_predict.lua` (closed loop, -t1 at N=1); "
        "batching on = default settings, off = `LSTM_SERVE_MAX_BATCH_SIZE=1`. "
        "Latency in ms; errors = non-2xx"
        " + socket errors.",
        "",
        "| connections | on req/s | on p50 | on p99 | on errors | off req/s | off p50 | off p99 "
        "| off errors | speed-up |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in sorted(set(on) | set(off)):
        a, b = on.get(level, {}), off.get(level, {})
        ratio = ratio_of(a.get("rps"), b.get("rps"))
        lines.append(f"| {level} | {_wrk_cells(a)} | {_wrk_cells(b)} | {fmt_num(ratio, 2)}x |")
    ratio = ratio_of(on.get(HEADLINE_LEVEL, {}).get("rps"), off.get(HEADLINE_LEVEL, {}).get("rps"))
    met = ratio >= SPEEDUP_TARGET if ratio else None
    line = (
        f"**Batching speed-up at {HEADLINE_LEVEL} connections: {fmt_num(ratio, 2)}x** "
        f"(target >= {SPEEDUP_TARGET:g}x){mark(met)}."
    )
    return [*lines, "", headline([on, off], line), ""]


def _wrk_cells(row: dict[str, Any]) -> str:
    """req/s, p50, p99 and errors of one wrk level (``-`` where it was not run)."""
    latency = row.get("latency_ms", {})
    return (
        f"{fmt_num(row.get('rps'))} | {fmt_num(latency.get('p50'), 2)} | "
        f"{fmt_num(latency.get('p99'), 2)} | {row.get('errors', '-')}"
    )


def echo_section(doc: dict[str, Any]) -> list[str]:
    heading = "## 2. HTTP ceiling: bare FastAPI echo app (one uvicorn worker)"
    part, lines = part_section(doc, "echo", heading)
    if part is None:
        return lines
    echo = by_level(part["levels"])
    predict = doc["parts"].get("predict") or {}
    on_levels = [] if "error" in predict else predict.get("batching_on", {}).get("levels", [])
    on = by_level(on_levels)
    lines += [
        "`uvicorn bench.http.echo_app:app --workers 1` (fixed answer, no model) under the same wrk "
        "load; predict = batching on from part 1.",
        "",
        "| connections | echo req/s | echo p50 | echo p99 | echo errors | predict req/s "
        "| predict / echo |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in sorted(echo):
        e = echo[level]
        p = on.get(level, {})
        lines.append(
            f"| {level} | {fmt_num(e.get('rps'))} | {fmt_num(e['latency_ms'].get('p50'), 2)} | "
            f"{fmt_num(e['latency_ms'].get('p99'), 2)} | {e['errors']} | {fmt_num(p.get('rps'))} | "
            f"{fmt_pct(ratio_of(p.get('rps'), e.get('rps')))} |"
        )
    share = ratio_of(on.get(HEADLINE_LEVEL, {}).get("rps"), echo.get(HEADLINE_LEVEL, {}).get("rps"))
    line = (
        f"**Predict throughput at {HEADLINE_LEVEL} connections = {fmt_pct(share)} of "
        f"the echo ceiling** (target >= {ECHO_SHARE_TARGET:.0%})"
        f"{mark(share >= ECHO_SHARE_TARGET if share else None)}."
    )
    return [*lines, "", headline([echo, on], line), ""]
