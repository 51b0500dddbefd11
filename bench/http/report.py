"""``REPORT.md`` and PNG plots from the ``results.json`` document of ``bench.http.orchestrator``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SPEEDUP_TARGET = 5.0
ECHO_SHARE_TARGET = 0.5
WS_FEEDS_TARGET = 5000.0
WS_P99_TARGET_MS = 100.0
HEADLINE_LEVEL = 64
WS_HEADLINE_SESSIONS = 1000


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if a and b else None


def _by_level(levels: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["connections"]): r for r in levels}


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" (target met)" if ok else " (**target missed**)")


def _part(doc: dict[str, Any], key: str, heading: str) -> tuple[Any, list[str]]:
    """A part of the run and its section's opening lines; ``None`` (and a "Not measured"
    line) when the part was skipped or failed."""
    part = doc["parts"].get(key)
    lines = [heading, ""]
    if not part or "error" in part:
        return None, [*lines, f"Not measured: {part.get('error') if part else 'skipped'}", ""]
    return part, lines


def _headline(levels: list[dict[int, Any]], line: str) -> str:
    """The headline sentence, or why it is missing (the level was not in this run)."""
    if all(HEADLINE_LEVEL in level for level in levels):
        return line
    return f"(The headline level {HEADLINE_LEVEL} was not in this run.)"


def _header(doc: dict[str, Any]) -> list[str]:
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


def _predict_section(doc: dict[str, Any]) -> list[str]:
    part, lines = _part(doc, "predict", "## 1. `POST /v1/predict` under wrk: batching on vs off")
    if part is None:
        return lines
    on = _by_level(part["batching_on"]["levels"])
    off = _by_level(part["batching_off"]["levels"])
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
        ratio = _ratio(a.get("rps"), b.get("rps"))
        lines.append(
            f"| {level} | {_num(a.get('rps'))} | {_num(a.get('latency_ms', {}).get('p50'), 2)} | "
            f"{_num(a.get('latency_ms', {}).get('p99'), 2)} | {a.get('errors', '-')} | "
            f"{_num(b.get('rps'))} | {_num(b.get('latency_ms', {}).get('p50'), 2)} | "
            f"{_num(b.get('latency_ms', {}).get('p99'), 2)} | {b.get('errors', '-')} | "
            f"{_num(ratio, 2)}x |"
        )
    ratio = _ratio(on.get(HEADLINE_LEVEL, {}).get("rps"), off.get(HEADLINE_LEVEL, {}).get("rps"))
    met = ratio >= SPEEDUP_TARGET if ratio else None
    line = (
        f"**Batching speed-up at {HEADLINE_LEVEL} connections: {_num(ratio, 2)}x** "
        f"(target >= {SPEEDUP_TARGET:g}x){_mark(met)}."
    )
    return [*lines, "", _headline([on, off], line), ""]


def _echo_section(doc: dict[str, Any]) -> list[str]:
    heading = "## 2. HTTP ceiling: bare FastAPI echo app (one uvicorn worker)"
    part, lines = _part(doc, "echo", heading)
    if part is None:
        return lines
    echo = _by_level(part["levels"])
    predict = doc["parts"].get("predict") or {}
    on_levels = [] if "error" in predict else predict.get("batching_on", {}).get("levels", [])
    on = _by_level(on_levels)
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
            f"| {level} | {_num(e.get('rps'))} | {_num(e['latency_ms'].get('p50'), 2)} | "
            f"{_num(e['latency_ms'].get('p99'), 2)} | {e['errors']} | {_num(p.get('rps'))} | "
            f"{_pct(_ratio(p.get('rps'), e.get('rps')))} |"
        )
    share = _ratio(on.get(HEADLINE_LEVEL, {}).get("rps"), echo.get(HEADLINE_LEVEL, {}).get("rps"))
    line = (
        f"**Predict throughput at {HEADLINE_LEVEL} connections = {_pct(share)} of "
        f"the echo ceiling** (target >= {ECHO_SHARE_TARGET:.0%})"
        f"{_mark(share >= ECHO_SHARE_TARGET if share else None)}."
    )
    return [*lines, "", _headline([echo, on], line), ""]


def _ws_section(doc: dict[str, Any]) -> list[str]:
    part, lines = _part(doc, "ws", "## 3. WebSocket streaming (`WS /v1/stream`)")
    if part is None:
        return lines
    nproc = doc["machine"]["nproc"] or 1
    lines += [
        "`lstm-serve-bench ws --concurrency N --processes 2` (closed loop: every session feeds one "
        "word, waits for its predictions, feeds the next). Latency in ms. Client CPU = the load "
        f"generator's CPU time over wall time, in cores and as a share of the {nproc} CPUs the "
        "server also runs on.",
        "",
        "| sessions | feeds/s | p50 | p99 | errors | client CPU (cores) | client share | note |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    notes: list[str] = []
    for run in part["levels"]:
        n = run["sessions"]
        if "error" in run:
            lines.append(f"| {n} | - | - | - | - | - | - | failed: {run['error'][:120]} |")
            notes.append(f"{n} sessions could not be measured: {run['error'][:300]}")
            continue
        op = run["ops"].get("ws_feed", run["ops"]["total"])
        cores = sum(run["client"]["cpu_util_per_process"])
        note = []
        if run["client"]["saturated"]:
            note.append("client busy/starved: client-bound")
        if op["errors"]:
            codes = ", ".join(f"{c}={k}" for c, k in op["errors_by_code"].items())
            note.append(codes)
        lines.append(
            f"| {n} | {_num(op['throughput_rps'])} | {_num(op['latency_ms']['p50'], 2)} | "
            f"{_num(op['latency_ms']['p99'], 2)} | {op['errors']} | {cores:.2f} | "
            f"{cores / nproc:.0%} | {'; '.join(note)} |"
        )
        if n == WS_HEADLINE_SESSIONS:
            feeds, p99 = op["throughput_rps"] or 0.0, op["latency_ms"]["p99"]
            ok = feeds >= WS_FEEDS_TARGET and p99 is not None and p99 <= WS_P99_TARGET_MS
            notes.append(
                f"**{n} sessions: {_num(feeds)} feeds/s, p99 {_num(p99, 1)} ms** "
                f"(targets >= {WS_FEEDS_TARGET:,.0f} feeds/s, p99 <= "
                f"{WS_P99_TARGET_MS:g} ms){_mark(ok)}."
            )
    lines.append("")
    if notes:
        lines += [*notes, ""]
    lines.append(
        "The client shares the box with the server: when it uses a large share of the "
        "CPUs, the server's feeds/s and latency are limited by the client, not the model."
    )
    return [*lines, ""]


def _ws_rates_section(doc: dict[str, Any]) -> list[str]:
    part, lines = _part(doc, "ws_rates", "## 3b. WebSocket at fixed rates (open loop)")
    if part is None:
        return lines
    sessions = part["sessions"]
    lines += [
        f"`lstm-serve-bench ws --concurrency {sessions} --rate R --processes 2`: {sessions} "
        "sessions, feeds sent on a fixed schedule whatever the answers do, latency from the "
        "scheduled time (no coordinated omission). Back-to-back sessions (part 3) queue by "
        "construction (latency = sessions / throughput); this is the latency a given load "
        "costs.",
        "",
        "| offered feeds/s | answered feeds/s | p50 | p90 | p99 | errors | client CPU (cores) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    best = None
    for run in part["levels"]:
        if "error" in run:
            lines.append(f"| {run['rate']} | failed: {run['error'][:120]} | | | | | |")
            continue
        op = run["ops"].get("ws_feed", run["ops"]["total"])
        latency = op["latency_ms"]
        cores = sum(run["client"]["cpu_util_per_process"])
        lines.append(
            f"| {run['rate']:,} | {_num(op['throughput_rps'])} | {_num(latency['p50'], 2)} | "
            f"{_num(latency['p90'], 2)} | {_num(latency['p99'], 2)} | {op['errors']} | "
            f"{cores:.2f} |"
        )
        p99 = latency["p99"]
        if p99 is not None and p99 <= WS_P99_TARGET_MS and not op["errors"]:
            best = max(best or 0, run["rate"])
    lines.append("")
    if best:
        lines.append(
            f"Highest offered rate with p99 <= {WS_P99_TARGET_MS:g} ms and no errors: "
            f"**{best:,} feeds/s** over {sessions} sessions (target {WS_FEEDS_TARGET:,.0f})."
        )
    else:
        lines.append(f"No offered rate kept p99 <= {WS_P99_TARGET_MS:g} ms.")
    return [*lines, ""]


def _overload_section(doc: dict[str, Any]) -> list[str]:
    run = doc["parts"].get("overload")
    lines = ["## 4. Open-loop overload at 2x saturation", ""]
    if not run or "error" in run or "summary" not in run:
        err = run.get("error") if run else "skipped"
        return [*lines, f"Not measured: {err}", ""]
    s, r = run["summary"], run["readyz"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
    clean = s["only_200_429"] and s["http_5xx"] == 0
    connections = doc["settings"].get("overload_connections", 1024)
    socket_errors = ", ".join(f"{k} {v}" for k, v in s["socket_errors"].items()) or "none"
    lines += [
        (
            "Saturation = best batching-on req/s of part 1"
            if not doc["settings"].get("saturation_rps")
            else "Saturation (given by --saturation-rps)"
        )
        + f" = {_num(run['saturation_rps'])}. Load: `wrk -t2 -c{connections} -s "
        "bench/http/wrk_paced.lua` with "
        f"`LSTM_SERVE_BENCH_THREAD_RATE={run['target_rate'] / 2:.0f}` "
        f"(open loop: each thread sends on a fixed schedule, {_num(run['target_rate'])} "
        "req/s in all) against a server with "
        f"`LSTM_SERVE_MAX_QUEUE={run['env']['LSTM_SERVE_MAX_QUEUE']}`; beside it, a probe "
        "`lstm-serve-bench predict --rate 20` (open loop, latency from the scheduled time, its "
        "32 connections opened before the load) measures what an accepted request waits; "
        "`/readyz` polled every 0.5 s.",
        "",
        "| metric | value |",
        "| --- | ---: |",
        f"| offered rate (req/s) | {_num(run['target_rate'])} |",
        f"| answered (req/s) | {s['answered']} ({_num(s['sent_rps'])}/s) |",
        f"| share of 429 | {_pct(s['share_429'])} |",
        f"| HTTP statuses | {statuses} |",
        f"| 5xx | {s['http_5xx']} |",
        f"| wrk p50 / p99, all answers (ms) | {_num(s['p50_all_ms'], 1)} / "
        f"{_num(s['p99_all_ms'], 1)} |",
        f"| probe: accepted / 429 | {s.get('probe_ok', '-')} / {s.get('probe_429', '-')} |",
        f"| probe: p50 / p99 of accepted (ms) | {_num(s.get('p50_accepted_ms'), 1)} / "
        f"{_num(s.get('p99_accepted_ms'), 1)} |",
        f"| wrk socket errors | {socket_errors} |",
        f"| `/readyz` non-200 / polls | {r['not_ready']} / {r['polls']} |",
        "",
        f"Only 200/429 and no 5xx: **{'yes' if clean else 'NO'}**; readiness held: "
        f"**{'yes' if r['not_ready'] == 0 and r['polls'] else 'NO'}**.",
    ]
    if not s.get("overload_reached", True):
        lines.append("**Overload was not reached**: no 429 at all.")
    if s["answered"] < 0.9 * run["target_rate"] * doc["settings"]["duration_s"]:
        lines.append(
            "wrk answered fewer requests than offered: the schedule slipped while every "
            "connection waited (requests unread in socket buffers count as waiting)."
        )
    return [*lines, ""]


def plot(doc: dict[str, Any], out: Path) -> list[str]:
    """``throughput.png`` (req/s vs connections) and ``latency.png`` (p99 vs req/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predict = doc["parts"].get("predict") or {}
    echo = doc["parts"].get("echo") or {}
    series = []
    if "error" not in predict:
        for tag, label in (
            ("batching_on", "predict, batching on"),
            ("batching_off", "predict, batching off"),
        ):
            if tag in predict:
                series.append((label, predict[tag]["levels"]))
    if "error" not in echo and "levels" in echo:
        series.append(("echo app (HTTP ceiling)", echo["levels"]))
    if not series:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, levels in series:
        pts = [(r["connections"], r["rps"]) for r in levels if r.get("rps")]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # the echo ceiling is often 10x the model's throughput
    ax.set_xlabel("wrk connections")
    ax.set_ylabel("requests/s (log)")
    ax.set_title("POST /v1/predict throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    written.append("throughput.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, levels in series:
        pts = [
            (r["rps"], r["latency_ms"]["p99"])
            for r in levels
            if r.get("rps") and r["latency_ms"].get("p99")
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
            for r in levels:
                if r.get("rps") and r["latency_ms"].get("p99"):
                    ax.annotate(
                        str(r["connections"]),
                        (r["rps"], r["latency_ms"]["p99"]),
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
    ax.set_yscale("log")
    ax.set_xlabel("requests/s")
    ax.set_ylabel("p99 latency (ms, wrk)")
    ax.set_title("p99 vs throughput (labels: connections)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    written.append("latency.png")
    return written


def write_report(doc: dict[str, Any], out: Path) -> Path:
    """Write ``REPORT.md`` (and the plots) into ``out``; returns the report's path."""
    try:
        pngs = plot(doc, out)
    except Exception as exc:  # a plot failure must not lose the tables
        pngs = []
        doc.setdefault("plot_error", str(exc))
    lines = [
        *_header(doc),
        *_predict_section(doc),
        *_echo_section(doc),
        *_ws_section(doc),
        *_ws_rates_section(doc),
        *_overload_section(doc),
    ]
    lines += [
        "## 5. Memory at 100,000 live sessions",
        "",
        "Not measured over HTTP here; see the engine benchmark (`bench/micro/engine_bench.py`).",
        "",
    ]
    if pngs:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
    lines += [
        "Raw wrk output, loadgen JSON and server logs: `bench/out/http/` (not in git); "
        "every number: `results.json`.",
        "",
    ]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
