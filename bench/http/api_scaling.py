"""HTTP predict and WebSocket feeds against the number of API processes, in one run.

    python -m bench.http.api_scaling --workers 1,2,4,8 --device cuda --cuda-graphs \
        --connections 256 --wrk-threads 4 --ws-sessions 2000 --ws-processes 4

For each count N a fresh ``lstm-serve`` starts with ``LSTM_SERVE_API_WORKERS=N`` (one
engine process either way). Predict: wrk with the PTB bodies of ``bench.http.bodies``
(k=5) at ``--connections``, after a 2-second warm-up; server CPU is utime+stime of the
whole process tree over the window, client CPU wrk's own. WebSocket: ``lstm-serve-bench
ws``, ``--ws-sessions`` sessions fed back to back from ``--ws-processes`` client processes.
Ratios are against the first count of the same run (issue 13: 4 API processes ≥ 3× one).
Summary JSON: ``--out``; raw wrk and loadgen output: git-ignored ``bench/out/api-scaling``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from bench.args import int_list
from bench.http.bodies import DEFAULT_OUT as BODIES
from bench.http.parts import print_ws, ws_run
from bench.http.targets_common import tree_cpu_s
from bench.http.wrk import run_wrk
from bench.serverproc import ROOT, ServerProcess, start_server

HERE = Path(__file__).resolve().parent
RAW = ROOT / "bench" / "out" / "api-scaling"


def serve(args: argparse.Namespace, workers: int) -> ServerProcess:
    env = {
        "LSTM_SERVE_MODEL_PATH": str(args.model),
        "LSTM_SERVE_API_WORKERS": str(workers),
        "LSTM_SERVE_DEVICE": args.device,
        "LSTM_SERVE_CUDA_GRAPHS": "1" if args.cuda_graphs else "0",
        "LSTM_SERVE_LOG_LEVEL": "warning",
    }
    if args.max_queue:
        env["LSTM_SERVE_MAX_QUEUE"] = str(args.max_queue)
    if args.max_batch_size:
        env["LSTM_SERVE_MAX_BATCH_SIZE"] = str(args.max_batch_size)
    return start_server(env, RAW / f"server-{workers}.log", 180)


def predict(server: ServerProcess, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """wrk at ``--connections`` with the server tree's and wrk's CPU over the window."""
    env = {"LSTM_SERVE_BENCH_BODIES": str(args.bodies), "LSTM_SERVE_BENCH_PATH": "/v1/predict"}
    script = HERE / "wrk_bodies.lua"
    run_wrk(server.url, args.connections, 2, None, script, env, args.wrk_threads)  # warm-up
    cpu0, wall0 = tree_cpu_s(server.process.pid), time.monotonic()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    raw = RAW / f"predict-{workers}.txt"
    result = run_wrk(
        server.url, args.connections, args.duration_s, raw, script, env, args.wrk_threads
    )
    wall = time.monotonic() - wall0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["server_cores"] = (tree_cpu_s(server.process.pid) - cpu0) / wall
    client_s = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    result["client_cores"] = client_s / wall
    print(
        f"  predict, {workers} API: {result['rps'] or 0:9.1f} req/s "
        f"p50 {result['latency_ms'].get('p50')} ms p99 {result['latency_ms'].get('p99')} ms, "
        f"server {result['server_cores']:.2f} cores, wrk {result['client_cores']:.2f}, "
        f"errors {result['errors']}",
        flush=True,
    )
    return result


def measure(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """Predict, then WebSocket feeds, against one fresh server with ``workers`` API
    processes."""
    print(f"[{workers} API processes]", flush=True)
    server = serve(args, workers)
    try:
        row: dict[str, Any] = {"workers": workers, "predict": predict(server, args, workers)}
        if args.ws_sessions:
            row["ws"] = ws_run(
                args, server.url, args.ws_sessions, args.ws_processes, None, f"ws-{workers}.json"
            )
            print_ws(f"ws, {workers} API:", row["ws"])
    finally:
        row_exit = server.stop()
    row["exit_code"] = row_exit
    return row


def _ws_rate(row: dict[str, Any]) -> float | None:
    ws = row.get("ws")
    if not ws or "error" in ws:
        return None
    ops = ws["ops"]
    rate = (ops["ws_feed"] if "ws_feed" in ops else ops["total"])["throughput_rps"]
    return float(rate) if rate else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each count's req/s and feeds/s with its ratio to the first count, and the target."""
    base = rows[0]
    base_rps = base["predict"]["rps"] or 0.0
    base_ws = _ws_rate(base)
    table = []
    for row in rows:
        rps = row["predict"]["rps"] or 0.0
        ws = _ws_rate(row)
        table.append(
            {
                "workers": row["workers"],
                "predict_rps": rps,
                "predict_p99_ms": row["predict"]["latency_ms"].get("p99"),
                "predict_over_first": rps / base_rps if base_rps else None,
                "server_cores": row["predict"]["server_cores"],
                "ws_feeds_per_s": ws,
                "ws_over_first": ws / base_ws if ws and base_ws else None,
            }
        )
    out: dict[str, Any] = {"first_workers": base["workers"], "table": table, "met": {}}
    by_workers = {r["workers"]: r for r in table}
    if base["workers"] == 1 and 4 in by_workers:
        ratio = by_workers[4]["predict_over_first"]
        out["met"]["predict 4 API >= 3x 1 API"] = ratio is not None and ratio >= 3.0
    return out


def format_table(summary: dict[str, Any]) -> str:
    first = summary["first_workers"]
    lines = [
        f"| API processes | predict req/s | × {first} API | p99 ms | server cores "
        f"| WS feeds/s | × {first} API |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["table"]:
        ws = r["ws_feeds_per_s"]
        lines.append(
            f"| {r['workers']} | {r['predict_rps']:,.0f} | {_ratio(r['predict_over_first'])} "
            f"| {r['predict_p99_ms'] if r['predict_p99_ms'] is not None else '—'} "
            f"| {r['server_cores']:.2f} | {f'{ws:,.0f}' if ws else '—'} "
            f"| {_ratio(r['ws_over_first'])} |"
        )
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", type=Path, default=ROOT / "models" / "default")
    add("--workers", type=int_list, default=[1, 2], help="API process counts, first = baseline")
    add("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add("--cuda-graphs", action="store_true", help="LSTM_SERVE_CUDA_GRAPHS=1")
    add("--max-queue", type=int, default=0, help="LSTM_SERVE_MAX_QUEUE (0: the default)")
    add("--max-batch-size", type=int, default=0, help="LSTM_SERVE_MAX_BATCH_SIZE (0: default)")
    add("--bodies", type=Path, default=BODIES)
    add("--connections", type=int, default=64)
    add("--wrk-threads", type=int, default=2)
    add("--duration-s", type=float, default=10.0)
    add("--ws-sessions", type=int, default=1000, help="0: no WebSocket part")
    add("--ws-processes", type=int, default=2)
    add("--out", type=Path, default=ROOT / "bench" / "results" / "api_scaling.json")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    RAW.mkdir(parents=True, exist_ok=True)
    args.raw = RAW  # where ws_run writes the load generator's JSON
    rows = [measure(args, workers) for workers in args.workers]
    summary = summarize(rows)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "args": _plain(args), "rows": rows}
    result["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(summary), flush=True)
    print(f"targets: {summary['met']}", flush=True)
    return result


def _plain(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


if __name__ == "__main__":
    main()
