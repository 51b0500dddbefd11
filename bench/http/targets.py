"""Issue 13's targets in one run: the process split against the engine alone and LitServe.

    .venv/bin/python -m bench.http.targets --rounds 2 --duration-s 15

Predict (wrk, 64 connections, the PTB bodies of ``bench.http.bodies``, k=5), round by
round so machine noise hits every variant alike: (a)+(b) the bare model in padded batches
of 64 and the engine alone (``bench.micro.engine_bench``, ids, 1 torch thread), (c)
``lstm-serve`` with default settings over HTTP, (d) the LitServe peer. Server CPU is
utime+stime of the server's process and all its descendants from /proc over the wrk
window; client CPU is wrk's own. A lone request (wrk, 1 connection) is compared with the
bare model step. Then WebSocket: 1,000 sessions back to back vs the engine's own feeds/s
of the same words (the load generator's text stream, 8 % of whose feeds are two tokens),
and open loop at 80 % of that rate. Before each measurement the 1-minute load average
must fall below ``--max-load`` (others share the machine); it is recorded either way.
Summary: ``--out`` (``targets.json``); raw outputs: git-ignored ``bench/out/targets``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.http import orchestrator as orch
from bench.http.bodies import DEFAULT_OUT as BODIES
from bench.http.bodies import DEFAULT_PTB, write_bodies
from bench.http.targets_common import (
    RAW,
    engine_alone,
    litserve,
    lstm_serve,
    tree_cpu_s,
    wait_quiet,
)
from bench.http.targets_ws import ws_part, ws_summary
from bench.serverproc import ROOT, ServerProcess

HERE = Path(__file__).resolve().parent


def wrk_measured(
    server: ServerProcess, args: argparse.Namespace, path: str, tag: str
) -> dict[str, Any]:
    """wrk at 64 connections, with the server tree's and wrk's own CPU over the window."""
    env = {"LSTM_SERVE_BENCH_BODIES": str(args.bodies), "LSTM_SERVE_BENCH_PATH": path}
    script = HERE / "wrk_bodies.lua"
    orch.run_wrk(server.url, 16, 3, None, script, env)  # warm-up
    load = wait_quiet(args.max_load, args.patience_s)
    cpu0, wall0 = tree_cpu_s(server.process.pid), time.monotonic()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = orch.run_wrk(server.url, 64, args.duration_s, RAW / f"{tag}-c64.txt", script, env)
    wall = time.monotonic() - wall0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["server_cores"] = (tree_cpu_s(server.process.pid) - cpu0) / wall
    client_s = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    result["client_cores"] = client_s / wall
    result["load_before"] = load
    lone = orch.run_wrk(server.url, 1, 5, RAW / f"{tag}-c1.txt", script, env)
    result["lone_p50_ms"] = lone["latency_ms"].get("p50")
    print(
        f"  {tag}: {result['rps']:8.1f} req/s p50 {result['latency_ms'].get('p50')} ms "
        f"p99 {result['latency_ms'].get('p99')} ms, server {result['server_cores']:.2f} cores, "
        f"client {result['client_cores']:.2f}, errors {result['errors']}, load {load:.2f}; "
        f"lone p50 {result['lone_p50_ms']} ms",
        flush=True,
    )
    return result


def predict_round(args: argparse.Namespace, round_: int) -> dict[str, Any]:
    """One A/B/C/D round: engine (with the bare model), lstm-serve, LitServe."""
    print(f"[round {round_}]", flush=True)
    row: dict[str, Any] = {}
    predict = ["--levels", "64", "--batch-sizes", "256", "--duration-s", str(args.duration_s)]
    row["engine"] = engine_alone(args, f"engine-r{round_}", "bare,lone,predict", predict)
    p = row["engine"]["predict"][0]
    print(f"  engine: {p['throughput_rps']:.1f} req/s p99 {p['p99']:.1f} ms", flush=True)
    print(f"  bare: {row['engine']['bare']['rows_per_s']:.1f} rows/s", flush=True)
    for name, start, path in (
        ("http", lstm_serve, "/v1/predict"),
        ("litserve", litserve, "/predict"),
    ):
        server = start(args, f"{name}-r{round_}")
        try:
            row[name] = wrk_measured(server, args, path, f"{name}-r{round_}")
        finally:
            server.stop()
    return row


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(rounds: list[dict[str, Any]], ws: dict[str, Any] | None) -> dict[str, Any]:
    """Means over the rounds, the ratios and each target met or missed."""

    def mean_of(name: str, pick: Any) -> float:
        return _mean([pick(r[name]) for r in rounds])

    s: dict[str, Any] = {"met": {}}
    if rounds:
        s.update(_predict_summary(rounds, mean_of))
    if ws and "error" not in ws["closed"] and "error" not in ws["open"]:
        s.update(ws_summary(ws))
        s["met"].update(s.pop("met_ws"))
    return s


def _predict_summary(rounds: list[dict[str, Any]], mean_of: Any) -> dict[str, Any]:
    engine_rps = mean_of("engine", lambda e: e["predict"][0]["throughput_rps"])
    http_rps = mean_of("http", lambda h: h["rps"])
    ls_rps = mean_of("litserve", lambda h: h["rps"])
    http_p99 = mean_of("http", lambda h: h["latency_ms"]["p99"])
    ls_p99 = mean_of("litserve", lambda h: h["latency_ms"]["p99"])
    bare_step = mean_of("engine", lambda e: e["bare"]["lone_step_ms"])
    lone_http = mean_of("http", lambda h: h["lone_p50_ms"])
    s: dict[str, Any] = {
        "bare_rows_per_s": mean_of("engine", lambda e: e["bare"]["rows_per_s"]),
        "engine_rps": engine_rps,
        "engine_p99_ms": mean_of("engine", lambda e: e["predict"][0]["p99"]),
        "http_rps": http_rps,
        "http_p50_ms": mean_of("http", lambda h: h["latency_ms"]["p50"]),
        "http_p99_ms": http_p99,
        "http_server_cores": mean_of("http", lambda h: h["server_cores"]),
        "litserve_rps": ls_rps,
        "litserve_p50_ms": mean_of("litserve", lambda h: h["latency_ms"]["p50"]),
        "litserve_p99_ms": ls_p99,
        "litserve_server_cores": mean_of("litserve", lambda h: h["server_cores"]),
        "http_over_engine": http_rps / engine_rps,
        "http_over_litserve": http_rps / ls_rps,
        "lone_http_p50_ms": lone_http,
        "bare_step_ms": bare_step,
        "lone_added_ms": lone_http - bare_step,
    }
    s["met"] = {
        "http >= 85% engine": s["http_over_engine"] >= 0.85,
        "http >= 1.8x litserve": s["http_over_litserve"] >= 1.8,
        "p99 <= litserve": http_p99 <= ls_p99,
        "server >= 1.6 cores": s["http_server_cores"] >= 1.6,
        "lone +<= 1 ms": s["lone_added_ms"] <= 1.0,
    }
    return s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--bodies", type=Path, default=BODIES)
    parser.add_argument("--ptb", type=Path, default=DEFAULT_PTB)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--patience-s", type=float, default=60.0)
    parser.add_argument("--skip-ws", action="store_true")
    parser.add_argument(
        "--ws-client",
        choices=("c", "python"),
        default="c",
        help="WebSocket load: bench/wsload (C, ~12 us of CPU per feed) or lstm-serve-bench ws",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "targets.json")
    args = parser.parse_args(argv)
    RAW.mkdir(parents=True, exist_ok=True)
    if not args.bodies.exists():
        write_bodies(args.ptb, args.bodies)
    doc: dict[str, Any] = {
        "command": " ".join(["python -m bench.http.targets", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": orch.machine_info(),
    }
    doc["rounds"] = [predict_round(args, i + 1) for i in range(args.rounds)]
    doc["ws"] = None if args.skip_ws else ws_part(args)
    doc["summary"] = summarize(doc["rounds"], doc["ws"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(json.dumps(doc["summary"], indent=1))


if __name__ == "__main__":
    main()
