"""The closed-loop parts of the HTTP benchmark: predict (batching on/off), echo, WebSocket.

Each part starts its own server, runs its levels and returns the JSON-ready rows that
``results.json`` keeps; the open-loop overload part lives in ``bench.http.overload``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bench.http.probes import run_loadgen
from bench.http.servers import echo_server, lstm_server
from bench.http.wrk import run_wrk
from bench.serverproc import ServerProcess

WS_RATE_SESSIONS = 1000


def _wrk_series(server: ServerProcess, args: argparse.Namespace, tag: str) -> list[dict[str, Any]]:
    if args.warmup_s > 0:
        run_wrk(server.url, 16, args.warmup_s, None)
    rows = []
    for level in args.levels:
        row = run_wrk(server.url, level, args.duration_s, args.raw / f"wrk-{tag}-c{level}.txt")
        print(
            f"  {tag:>12} c={level:<4} {row['rps'] or 0:10.1f} req/s  "
            f"p50 {row['latency_ms'].get('p50', float('nan')):8.2f} ms  "
            f"p99 {row['latency_ms'].get('p99', float('nan')):8.2f} ms  errors {row['errors']}",
            flush=True,
        )
        rows.append(row)
    return rows


def part_predict(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag, env in (("batching_on", {}), ("batching_off", {"LSTM_SERVE_MAX_BATCH_SIZE": "1"})):
        print(f"[predict] {tag}", flush=True)
        with lstm_server(args, env, tag) as server:
            out[tag] = {"env": env, "levels": _wrk_series(server, args, tag)}
    return out


def part_echo(args: argparse.Namespace) -> dict[str, Any]:
    print("[echo] bare FastAPI app, one uvicorn worker", flush=True)
    with echo_server(args) as server:
        return {"levels": _wrk_series(server, args, "echo")}


def part_ws(args: argparse.Namespace) -> dict[str, Any]:
    most = max(args.ws_levels)
    env = {"LSTM_SERVE_MAX_SESSIONS": str(max(100_000, most))}
    rows = []
    print("[ws] streaming sessions", flush=True)
    with lstm_server(args, env, "ws") as server:
        for level in args.ws_levels:
            procs = max(1, min(args.client_processes, level))
            run = ws_run(args, server.url, level, procs, None, f"ws-{level}.json")
            rows.append(run)
            print_ws(f"sessions={level:<5}", run)
    return {"env": env, "levels": rows}


def ws_run(
    args: argparse.Namespace,
    url: str,
    sessions: int,
    processes: int,
    rate: int | None,
    json_name: str,
) -> dict[str, Any]:
    """One ``lstm-serve-bench ws`` run: closed loop, or open loop at ``rate``."""
    argv = ["ws", "--url", url, "--concurrency", str(sessions), "--processes", str(processes)]
    if rate is not None:
        argv += ["--rate", str(rate)]
    argv += ["--duration-s", f"{args.duration_s:g}", "--grace-s", "5"]
    # Session set-up is outside the timed phase: allow ~1 ms per session and more.
    budget = args.duration_s + 5 + 90 + sessions * 0.02
    run = run_loadgen(argv, args.raw / json_name, budget)
    run["sessions"] = sessions
    return run


def print_ws(label: str, run: dict[str, Any]) -> None:
    if "error" in run:
        print(f"  {label}: FAILED {run['error'][:300]}", flush=True)
        return
    op = run["ops"].get("ws_feed", run["ops"]["total"])
    print(
        f"  {label} {op['throughput_rps'] or 0:9.1f} feeds/s  "
        f"p50 {op['latency_ms']['p50'] or float('nan'):8.2f} ms  "
        f"p99 {op['latency_ms']['p99'] or float('nan'):8.2f} ms  "
        f"errors {op['errors']}  client CPU "
        f"{sum(run['client']['cpu_util_per_process']):.2f} cores",
        flush=True,
    )


def part_ws_rates(args: argparse.Namespace) -> dict[str, Any]:
    """Latency at fixed offered rates (open loop): what p99 a rate costs, without the
    queueing that back-to-back sessions build by construction."""
    sessions = WS_RATE_SESSIONS if not args.quick else 10
    rows = []
    print(f"[ws-rates] open loop over {sessions} sessions", flush=True)
    with lstm_server(args, {}, "ws-rates") as server:
        for rate in args.ws_rates:
            run = ws_run(
                args, server.url, sessions, args.client_processes, rate, f"ws-rate-{rate}.json"
            )
            run["rate"] = rate
            rows.append(run)
            print_ws(f"rate={rate:<5}", run)
    return {"sessions": sessions, "levels": rows}


def best_rps(levels: Sequence[dict[str, Any]]) -> float | None:
    values = [r["rps"] for r in levels if r.get("rps")]
    return max(values) if values else None
