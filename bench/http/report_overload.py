"""``REPORT.md``'s overload section (part 4): statuses, shed share, latency, readiness.

Apart because it reads the overload part's own summary (wrk, probe and poller together).
"""

from __future__ import annotations

from typing import Any

from bench.http.report_format import fmt_num, fmt_pct


def overload_section(doc: dict[str, Any]) -> list[str]:
    run = doc["parts"].get("overload")
    lines = ["## 4. Open-loop overload at 2x saturation", ""]
    if not run or "error" in run or "summary" not in run:
        err = run.get("error") if run else "skipped"
        return [*lines, f"Not measured: {err}", ""]
    s = run["summary"]
    lines += [_intro(doc, run), "", *_table(run)]
    if not s.get("overload_reached", True):
        lines.append("**Overload was not reached**: no 429 at all.")
    if s["answered"] < 0.9 * run["target_rate"] * doc["settings"]["duration_s"]:
        lines.append(
            "wrk answered fewer requests than offered: the schedule slipped while every "
            "connection waited (requests unread in socket buffers count as waiting)."
        )
    return [*lines, ""]


def _intro(doc: dict[str, Any], run: dict[str, Any]) -> str:
    """How the load was made: saturation, wrk's pacing, the queue, the probe, the poller."""
    connections = doc["settings"].get("overload_connections", 1024)
    return (
        (
            "Saturation = best batching-on req/s of part 1"
            if not doc["settings"].get("saturation_rps")
            else "Saturation (given by --saturation-rps)"
        )
        + f" = {fmt_num(run['saturation_rps'])}. Load: `wrk -t2 -c{connections} -s "
        "bench/http/wrk_paced.lua` with "
        f"`LSTM_SERVE_BENCH_THREAD_RATE={run['target_rate'] / 2:.0f}` "
        f"(open loop: each thread sends on a fixed schedule, {fmt_num(run['target_rate'])} "
        "req/s in all) against a server with "
        f"`LSTM_SERVE_MAX_QUEUE={run['env']['LSTM_SERVE_MAX_QUEUE']}`; beside it, a probe "
        "`lstm-serve-bench predict --rate 20` (open loop, latency from the scheduled time, its "
        "32 connections opened before the load) measures what an accepted request waits; "
        "`/readyz` polled every 0.5 s."
    )


def _table(run: dict[str, Any]) -> list[str]:
    """The metrics table and the verdict line (statuses clean, readiness held)."""
    s, r = run["summary"], run["readyz"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
    clean = s["only_200_429"] and s["http_5xx"] == 0
    socket_errors = ", ".join(f"{k} {v}" for k, v in s["socket_errors"].items()) or "none"
    return [
        "| metric | value |",
        "| --- | ---: |",
        f"| offered rate (req/s) | {fmt_num(run['target_rate'])} |",
        f"| answered (req/s) | {s['answered']} ({fmt_num(s['sent_rps'])}/s) |",
        f"| share of 429 | {fmt_pct(s['share_429'])} |",
        f"| HTTP statuses | {statuses} |",
        f"| 5xx | {s['http_5xx']} |",
        f"| wrk p50 / p99, all answers (ms) | {fmt_num(s['p50_all_ms'], 1)} / "
        f"{fmt_num(s['p99_all_ms'], 1)} |",
        f"| probe: accepted / 429 | {s.get('probe_ok', '-')} / {s.get('probe_429', '-')} |",
        f"| probe: p50 / p99 of accepted (ms) | {fmt_num(s.get('p50_accepted_ms'), 1)} / "
        f"{fmt_num(s.get('p99_accepted_ms'), 1)} |",
        f"| wrk socket errors | {socket_errors} |",
        f"| `/readyz` non-200 / polls | {r['not_ready']} / {r['polls']} |",
        "",
        f"Only 200/429 and no 5xx: **{'yes' if clean else 'NO'}**; readiness held: "
        f"**{'yes' if r['not_ready'] == 0 and r['polls'] else 'NO'}**.",
    ]
