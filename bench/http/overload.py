"""The open-loop overload part of the HTTP benchmark: 2x saturation, what is shed and how.

Paced wrk makes the load (a C client can offer it on a box where the server takes the
CPUs), a light Python probe at a fixed low rate measures what an accepted request waits,
and ``/readyz`` is polled throughout. Apart from the closed-loop parts because it runs
three clients at once and summarises their answers together.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from bench.http.probes import ReadyzPoller, run_loadgen
from bench.http.servers import lstm_server
from bench.http.wrk import WRK_PACED_SCRIPT, run_wrk

OVERLOAD_PROBE_RATE = 20  # req/s of the latency probe beside the paced wrk load
OVERLOAD_PROBE_LEAD_S = 2.0  # the probe starts (and connects) this long before wrk
WRK_THREADS = 2


def _probe_argv(url: str, duration_s: float) -> list[str]:
    """``bench.loadgen predict`` at a low fixed rate, connected before the load starts."""
    return [
        *("predict", "--url", url, "--rate", str(OVERLOAD_PROBE_RATE)),
        *("--concurrency", "32", "--preconnect"),
        *("--warmup-s", f"{OVERLOAD_PROBE_LEAD_S:g}"),
        *("--duration-s", f"{duration_s + OVERLOAD_PROBE_LEAD_S:g}", "--grace-s", "10"),
    ]


def _measure(
    args: argparse.Namespace, url: str, rate: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run the paced wrk load, the probe and the poller together: (wrk, probe, readyz)."""
    probe: dict[str, Any] = {}
    argv = _probe_argv(url, args.duration_s)
    prober = threading.Thread(
        target=lambda: probe.update(
            run_loadgen(argv, args.raw / "overload-probe.json", args.duration_s + 120)
        ),
        daemon=True,
    )
    poller = ReadyzPoller(url, 0.5)
    poller.start()
    prober.start()
    time.sleep(OVERLOAD_PROBE_LEAD_S)  # its connections open before the load starts
    try:
        load = run_wrk(
            url,
            args.overload_connections,
            args.duration_s,
            args.raw / "overload-wrk.txt",
            script=WRK_PACED_SCRIPT,
            env={"LSTM_SERVE_BENCH_THREAD_RATE": f"{rate / WRK_THREADS:.1f}"},
        )
        prober.join(args.duration_s + 130)
    finally:
        readyz = poller.stop()
    return load, probe, readyz


def summarize(load: dict[str, Any], probe: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Statuses, 429 share and latencies of all answers (wrk) and of accepted ones (probe)."""
    non2xx = load["non2xx_by_status"]
    statuses = {"200": load["requests"] - load["non2xx"], **non2xx}
    answered = sum(statuses.values())
    summary: dict[str, Any] = {
        "statuses": statuses,
        "answered": answered,
        "sent_rps": answered / duration_s,
        "share_429": statuses.get("429", 0) / answered if answered else None,
        "socket_errors": load["socket_errors"],
        "p50_all_ms": load["latency_ms"].get("p50"),
        "p99_all_ms": load["latency_ms"].get("p99"),
        "http_5xx": sum(n for code, n in statuses.items() if int(code) >= 500),
        "only_200_429": set(statuses) <= {"200", "429"},
        "overload_reached": statuses.get("429", 0) > 0,
    }
    if "error" not in probe and probe:
        op = probe["ops"]["predict"]
        summary.update(
            probe_ok=op["ok"],
            probe_429=op["errors_by_code"].get("overloaded", 0),
            probe_other_errors={c: n for c, n in op["errors_by_code"].items() if c != "overloaded"},
            p50_accepted_ms=op["latency_ms"]["p50"],
            p99_accepted_ms=op["latency_ms"]["p99"],
        )
    return summary


def part_overload(args: argparse.Namespace, saturation_rps: float | None) -> dict[str, Any]:
    """Open loop at 2x saturation (module docstring); the run and its ``summary``."""
    if not saturation_rps:
        return {"error": "no saturation measured (predict part skipped or failed)"}
    rate = 2 * saturation_rps
    env = {"LSTM_SERVE_MAX_QUEUE": str(args.overload_queue)}
    print(f"[overload] open loop at {rate:.0f}/s = 2 x {saturation_rps:.0f}", flush=True)
    with lstm_server(args, env, "overload") as server:
        load, probe, readyz = _measure(args, server.url, rate)
    summary = summarize(load, probe, args.duration_s)
    print(
        f"  statuses {summary['statuses']}; 429 share {summary['share_429'] or 0:.1%}; p99 all "
        f"{summary['p99_all_ms'] or float('nan'):.1f} ms; p99 accepted (probe) "
        f"{summary.get('p99_accepted_ms') or float('nan'):.1f} ms; readyz non-200 "
        f"{readyz['not_ready']}/{readyz['polls']}",
        flush=True,
    )
    return {
        "saturation_rps": saturation_rps,
        "target_rate": rate,
        "env": env,
        "readyz": readyz,
        "wrk": load,
        "probe": probe,
        "summary": summary,
    }
