"""``REPORT.md``'s WebSocket sections: closed-loop sessions (part 3) and fixed rates (3b).

Kept apart from the wrk sections because their rows come from ``lstm-serve-bench ws``
JSON (ops, client CPU) rather than wrk's text.
"""

from __future__ import annotations

from typing import Any

from bench.http.report_format import (
    WS_FEEDS_TARGET,
    WS_HEADLINE_SESSIONS,
    WS_P99_TARGET_MS,
    fmt_num,
    mark,
    part_section,
)


def ws_section(doc: dict[str, Any]) -> list[str]:
    part, lines = part_section(doc, "ws", "## 3. WebSocket streaming (`WS /v1/stream`)")
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
        row, note = _ws_row(run, nproc)
        lines.append(row)
        if note:
            notes.append(note)
    lines.append("")
    if notes:
        lines += [*notes, ""]
    lines.append(
        "The client shares the box with the server: when it uses a large share of the "
        "CPUs, the server's feeds/s and latency are limited by the client, not the model."
    )
    return [*lines, ""]


def _ws_row(run: dict[str, Any], nproc: int) -> tuple[str, str | None]:
    """One table row of a sessions level, and the note it earns (a failure, or the
    headline level against its targets)."""
    n = run["sessions"]
    if "error" in run:
        row = f"| {n} | - | - | - | - | - | - | failed: {run['error'][:120]} |"
        return row, f"{n} sessions could not be measured: {run['error'][:300]}"
    op = run["ops"].get("ws_feed", run["ops"]["total"])
    cores = sum(run["client"]["cpu_util_per_process"])
    note = []
    if run["client"]["saturated"]:
        note.append("client busy/starved: client-bound")
    if op["errors"]:
        codes = ", ".join(f"{c}={k}" for c, k in op["errors_by_code"].items())
        note.append(codes)
    row = (
        f"| {n} | {fmt_num(op['throughput_rps'])} | {fmt_num(op['latency_ms']['p50'], 2)} | "
        f"{fmt_num(op['latency_ms']['p99'], 2)} | {op['errors']} | {cores:.2f} | "
        f"{cores / nproc:.0%} | {'; '.join(note)} |"
    )
    if n != WS_HEADLINE_SESSIONS:
        return row, None
    feeds, p99 = op["throughput_rps"] or 0.0, op["latency_ms"]["p99"]
    ok = feeds >= WS_FEEDS_TARGET and p99 is not None and p99 <= WS_P99_TARGET_MS
    return row, (
        f"**{n} sessions: {fmt_num(feeds)} feeds/s, p99 {fmt_num(p99, 1)} ms** "
        f"(targets >= {WS_FEEDS_TARGET:,.0f} feeds/s, p99 <= "
        f"{WS_P99_TARGET_MS:g} ms){mark(ok)}."
    )


def ws_rates_section(doc: dict[str, Any]) -> list[str]:
    part, lines = part_section(doc, "ws_rates", "## 3b. WebSocket at fixed rates (open loop)")
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
            f"| {run['rate']:,} | {fmt_num(op['throughput_rps'])} | {fmt_num(latency['p50'], 2)} | "
            f"{fmt_num(latency['p90'], 2)} | {fmt_num(latency['p99'], 2)} | {op['errors']} | "
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
