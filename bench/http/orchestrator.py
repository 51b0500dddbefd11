"""Issue-6 HTTP benchmark in one run: predict (batching on/off) and the echo ceiling under
wrk, WebSocket streaming with ``lstm-serve-bench ws``, and open-loop overload at 2x
saturation with readiness polled during it.

    python -m bench.http.orchestrator --out bench/results/http            # full report (~5 min)
    python -m bench.http.orchestrator --out /tmp/hb --quick --model PATH  # smoke test (~40 s)

Writes ``results.json`` (every number), ``REPORT.md`` (the tables), ``throughput.png`` and
``latency.png`` plus the raw wrk output and loadgen JSON of every level under ``--raw`` (git-ignored
``bench/out/http`` by default).
Each server is a subprocess on 127.0.0.1 on a free port, stopped at the end of its part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.args import int_list
from bench.http.machine import machine_info, raise_nofile
from bench.http.overload import part_overload
from bench.http.parts import best_rps, part_echo, part_predict, part_ws, part_ws_rates
from bench.http.parts import print_ws as _print_ws
from bench.http.parts import ws_run as _ws_run
from bench.http.wrk import parse_wrk, run_wrk
from bench.serverproc import ROOT

# Names other modules (bench.http.targets, tests) import from here since before the split.
__all__ = ["_print_ws", "_ws_run", "build_parser", "machine_info", "main", "parse_wrk", "run_wrk"]

RAW_DIR = ROOT / "bench" / "out" / "http"  # git-ignored: raw outputs stay out of the repository
DEFAULT_LEVELS = (1, 4, 16, 64, 256)
DEFAULT_WS_LEVELS = (100, 1000, 5000)
DEFAULT_WS_RATES = (500, 1000, 1500, 2000)
QUICK_DEFAULTS = {  # --quick: what each option becomes unless given on the command line
    "--duration-s": ("duration_s", 1.0),
    "--warmup-s": ("warmup_s", 0.0),
    "--levels": ("levels", [1, 4]),
    "--ws-levels": ("ws_levels", [10]),
    "--ws-rates": ("ws_rates", [20]),
    "--overload-connections": ("overload_connections", 128),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.http.orchestrator", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/http"), help="output folder")
    p.add_argument(
        "--raw",
        type=Path,
        default=RAW_DIR,
        help="raw wrk output, loadgen JSON and server logs (default bench/out/http, git-ignored)",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=ROOT / "models" / "default",
        help="checkpoint to serve (default models/default)",
    )
    p.add_argument("--duration-s", type=float, default=10.0, help="per wrk/loadgen level")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=2.0,
        help="un-recorded wrk run at 16 connections after each server start",
    )
    _add_level_options(p)
    _add_overload_options(p)
    p.add_argument("--client-processes", type=int, default=2, help="loadgen --processes")
    p.add_argument(
        "--skip",
        default="",
        help="comma list of parts to skip: predict,echo,ws,ws_rates,overload",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 s per level, no warm-up, levels 1,4 and ws 10 unless given",
    )
    return p


def _add_level_options(p: argparse.ArgumentParser) -> None:
    """wrk connections and WebSocket sessions/rates: what each part sweeps."""
    p.add_argument(
        "--levels",
        type=int_list,
        default=list(DEFAULT_LEVELS),
        help="wrk connections (default 1,4,16,64,256)",
    )
    p.add_argument(
        "--ws-levels",
        type=int_list,
        default=list(DEFAULT_WS_LEVELS),
        help="concurrent WebSocket sessions (default 100,1000,5000)",
    )
    p.add_argument(
        "--ws-rates",
        type=int_list,
        default=list(DEFAULT_WS_RATES),
        help="open-loop feeds/s over 1,000 sessions (default 500,1000,1500,2000)",
    )


def _add_overload_options(p: argparse.ArgumentParser) -> None:
    """The overload part's server queue, wrk connections and saturation."""
    p.add_argument(
        "--overload-queue",
        type=int,
        default=256,
        help="LSTM_SERVE_MAX_QUEUE of the overload server (default 256)",
    )
    p.add_argument(
        "--overload-connections",
        type=int,
        default=1024,
        help="wrk connections in the overload run; enough that some are always free to "
        "send on schedule (default 1024; 128 with --quick)",
    )
    p.add_argument(
        "--saturation-rps",
        type=float,
        default=None,
        help="overload: use this saturation instead of part 1's best batching-on "
        "req/s (to rerun the overload part alone with --skip predict,echo,ws)",
    )


# ---------------------------------------------------------------- main


def _apply_quick(args: argparse.Namespace, given: set[str]) -> None:
    """``--quick``: short levels for every option not given on the command line."""
    if not args.quick:
        return
    for flag, (name, value) in QUICK_DEFAULTS.items():
        if flag not in given:
            setattr(args, name, list(value) if isinstance(value, list) else value)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": str(args.model),
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "levels": args.levels,
        "ws_levels": args.ws_levels,
        "ws_rates": args.ws_rates,
        "overload_queue": args.overload_queue,
        "overload_connections": args.overload_connections,
        "saturation_rps": args.saturation_rps,
        "client_processes": args.client_processes,
        "quick": args.quick,
    }


def _steps(args: argparse.Namespace, parts: dict[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    """The parts in order; overload reads the saturation part 1 measured (or was given)."""

    def saturation() -> float | None:
        if args.saturation_rps:
            return float(args.saturation_rps)
        predict = parts.get("predict", {})
        return best_rps(predict.get("batching_on", {}).get("levels", []))

    return [
        ("predict", lambda: part_predict(args)),
        ("echo", lambda: part_echo(args)),
        ("ws", lambda: part_ws(args)),
        ("ws_rates", lambda: part_ws_rates(args)),
        ("overload", lambda: part_overload(args, saturation())),
    ]


def _run_parts(args: argparse.Namespace, parts: dict[str, Any], skip: set[str]) -> bool:
    """Run every part not skipped into ``parts``; True if any failed or was interrupted."""
    failed = False
    try:
        for name, step in _steps(args, parts):
            if name in skip:
                continue
            try:
                parts[name] = step()
            except Exception as exc:  # one broken part must not lose the rest
                failed = True
                parts[name] = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
                print(f"[{name}] FAILED: {parts[name]['error'][:1000]}", flush=True)
    except KeyboardInterrupt:
        failed = True
        print("interrupted: writing what was measured", file=sys.stderr)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    _apply_quick(args, set(given))
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    args.model = args.model.resolve()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    args.raw.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile(max(65536, 4 * max(args.ws_levels or [1]) + 1024))
    command = shlex.join([Path(sys.executable).name, "-m", "bench.http.orchestrator", *given])
    doc: dict[str, Any] = {
        "command": command,
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "nofile": nofile,
        "settings": _settings(args),
        "parts": {},
    }
    print(f"{command}\n{doc['machine']['nproc']} CPUs, {doc['machine']['cpu_model']}", flush=True)
    failed = _run_parts(args, doc["parts"], skip)
    doc["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (args.out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")

    from bench.http.report import write_report

    report = write_report(doc, args.out)
    print(f"\nwrote {args.out / 'results.json'}, {report} and plots", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
