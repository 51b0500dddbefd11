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
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.serverproc import ROOT, ServerProcess, free_port, start_app, start_server

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_predict.lua"
WRK_PACED_SCRIPT = HERE / "wrk_paced.lua"
RAW_DIR = ROOT / "bench" / "out" / "http"  # git-ignored: raw outputs stay out of the repository
OVERLOAD_PROBE_RATE = 20  # req/s of the latency probe beside the paced wrk load
OVERLOAD_PROBE_LEAD_S = 2.0  # the probe starts (and connects) this long before wrk
DEFAULT_LEVELS = (1, 4, 16, 64, 256)
DEFAULT_WS_LEVELS = (100, 1000, 5000)
DEFAULT_WS_RATES = (500, 1000, 1500, 2000)
WS_RATE_SESSIONS = 1000
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ints(spec: str) -> list[int]:
    return [int(x) for x in spec.split(",") if x.strip()]


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
    p.add_argument(
        "--levels",
        type=_ints,
        default=list(DEFAULT_LEVELS),
        help="wrk connections (default 1,4,16,64,256)",
    )
    p.add_argument(
        "--ws-levels",
        type=_ints,
        default=list(DEFAULT_WS_LEVELS),
        help="concurrent WebSocket sessions (default 100,1000,5000)",
    )
    p.add_argument(
        "--ws-rates",
        type=_ints,
        default=list(DEFAULT_WS_RATES),
        help="open-loop feeds/s over 1,000 sessions (default 500,1000,1500,2000)",
    )
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


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
        torch_version: str | None = torch.__version__
    except ImportError:  # pragma: no cover
        torch_threads = torch_version = None
    wrk_version = ""
    if shutil.which("wrk"):
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        wrk_version = (
            (proc.stdout + proc.stderr).strip().splitlines()[0]
            if (proc.stdout + proc.stderr).strip()
            else ""
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "torch_threads": torch_threads,
        "torch_version": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": wrk_version,
        "loadavg_at_start": list(load) if load else None,
        "server_threads_env": os.environ.get("LSTM_SERVE_THREADS", ""),
    }


def raise_nofile(want: int) -> dict[str, int]:
    """Raise the soft open-files limit towards ``want`` (children inherit it)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": int(soft), "hard": int(hard)}


# ---------------------------------------------------------------- wrk


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, latency p50/p75/p90/p99 (ms), requests, non-2xx and socket errors."""
    out: dict[str, Any] = {
        "rps": None,
        "latency_ms": {},
        "requests": 0,
        "non2xx": 0,
        "non2xx_by_status": {},
        "socket_errors": {},
    }
    if m := re.search(r"Requests/sec:\s*([\d.]+)", text):
        out["rps"] = float(m.group(1))
    for pct, value, unit in re.findall(
        r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE
    ):
        out["latency_ms"][f"p{float(pct):g}"] = _ms(value, unit)
    if m := re.search(r"^\s*(\d+) requests in", text, re.MULTILINE):
        out["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text):
        out["non2xx"] = int(m.group(1))
    if m := re.search(r"non-2xx by status:(.*)$", text, re.MULTILINE):
        out["non2xx_by_status"] = {s: int(n) for s, n in re.findall(r"(\d+)=(\d+)", m.group(1))}
        out["non2xx"] = max(out["non2xx"], sum(out["non2xx_by_status"].values()))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        out["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    out["errors"] = out["non2xx"] + sum(out["socket_errors"].values())
    return out


def wrk_command(
    url: str, connections: int, duration_s: float, script: Path | None = None
) -> list[str]:
    threads = max(1, min(2, connections))
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script or WRK_SCRIPT),
        url,
    ]


def run_wrk(
    url: str,
    connections: int,
    duration_s: float,
    raw: Path | None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    cmd = wrk_command(url, connections, duration_s, script)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=duration_s + 60,
        env={**os.environ, **(env or {})},
    )
    text = proc.stdout + proc.stderr
    if raw is not None:
        prefix = "".join(f"{k}={v} " for k, v in (env or {}).items())
        raw.write_text(prefix + " ".join(cmd) + "\n\n" + text)
    result = parse_wrk(text)
    result.update(connections=connections, command=" ".join(cmd), rc=proc.returncode)
    return result


# ---------------------------------------------------------------- servers


@contextlib.contextmanager
def lstm_server(
    args: argparse.Namespace, env: dict[str, str], name: str
) -> Iterator[ServerProcess]:
    full = {"LSTM_SERVE_MODEL_PATH": str(args.model), "LSTM_SERVE_LOG_LEVEL": "warning", **env}
    server = start_server(full, args.raw / f"server-{name}.log", ready_timeout_s=180)
    try:
        yield server
    finally:
        server.stop()


def echo_command(port: int) -> list[str]:
    """The null server: ``bench.http.echo_app`` under one uvicorn worker."""
    return [
        *(sys.executable, "-m", "uvicorn", "bench.http.echo_app:app"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--log-level", "warning"),
    ]


@contextlib.contextmanager
def echo_server(args: argparse.Namespace) -> Iterator[ServerProcess]:
    port = free_port()
    server = start_app(echo_command(port), args.raw / "server-echo.log", port)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- loadgen


def run_loadgen(argv: list[str], json_path: Path, timeout_s: float) -> dict[str, Any]:
    """``python -m bench.loadgen ARGV --json PATH``; its first run, or an ``error``."""
    cmd = [sys.executable, "-m", "bench.loadgen", *argv, "--json", str(json_path)]
    log = json_path.with_suffix(".txt")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, check=False, timeout=timeout_s
        )
        log.write_text(shlex.join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "command": shlex.join(cmd)}
    if not json_path.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        return {"error": f"exit {proc.returncode}, no JSON: {tail}", "command": shlex.join(cmd)}
    run = json.loads(json_path.read_text())["runs"][0]
    run["command"] = shlex.join(cmd)
    run["rc"] = proc.returncode
    return run


class ReadyzPoller(threading.Thread):
    """GET /readyz every ``interval_s`` until stopped; counts non-200 (and failed) polls."""

    def __init__(self, url: str, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.interval_s = url + "/readyz", interval_s
        self.polls = 0
        self.not_ready: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop_event.is_set():
                try:
                    status = str(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.polls += 1
                if status != "200":
                    self.not_ready[status] = self.not_ready.get(status, 0) + 1
                self._stop_event.wait(self.interval_s)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join(timeout=5)
        return {
            "polls": self.polls,
            "not_ready": sum(self.not_ready.values()),
            "not_ready_by_status": self.not_ready,
        }


# ---------------------------------------------------------------- parts


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
            run = _ws_run(args, server.url, level, procs, None, f"ws-{level}.json")
            rows.append(run)
            _print_ws(f"sessions={level:<5}", run)
    return {"env": env, "levels": rows}


def _ws_run(
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


def _print_ws(label: str, run: dict[str, Any]) -> None:
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
            run = _ws_run(
                args, server.url, sessions, args.client_processes, rate, f"ws-rate-{rate}.json"
            )
            run["rate"] = rate
            rows.append(run)
            _print_ws(f"rate={rate:<5}", run)
    return {"sessions": sessions, "levels": rows}


def part_overload(args: argparse.Namespace, saturation_rps: float | None) -> dict[str, Any]:
    """Open loop at 2x saturation: paced wrk makes the load (a C client can offer it on a
    box where the server takes the CPUs), a light Python probe at a fixed low rate
    measures what an accepted request waits, and /readyz is polled throughout."""
    if not saturation_rps:
        return {"error": "no saturation measured (predict part skipped or failed)"}
    rate = 2 * saturation_rps
    env = {"LSTM_SERVE_MAX_QUEUE": str(args.overload_queue)}
    threads = 2
    print(f"[overload] open loop at {rate:.0f}/s = 2 x {saturation_rps:.0f}", flush=True)
    with lstm_server(args, env, "overload") as server:
        probe_argv = [
            "predict",
            "--url",
            server.url,
            "--rate",
            str(OVERLOAD_PROBE_RATE),
            "--concurrency",
            "32",
            "--preconnect",
            "--warmup-s",
            f"{OVERLOAD_PROBE_LEAD_S:g}",
            "--duration-s",
            f"{args.duration_s + OVERLOAD_PROBE_LEAD_S:g}",
            "--grace-s",
            "10",
        ]
        probe: dict[str, Any] = {}
        prober = threading.Thread(
            target=lambda: probe.update(
                run_loadgen(probe_argv, args.raw / "overload-probe.json", args.duration_s + 120)
            ),
            daemon=True,
        )
        poller = ReadyzPoller(server.url, 0.5)
        poller.start()
        prober.start()
        time.sleep(OVERLOAD_PROBE_LEAD_S)  # its connections open before the load starts
        try:
            load = run_wrk(
                server.url,
                args.overload_connections,
                args.duration_s,
                args.raw / "overload-wrk.txt",
                script=WRK_PACED_SCRIPT,
                env={"LSTM_SERVE_BENCH_THREAD_RATE": f"{rate / threads:.1f}"},
            )
            prober.join(args.duration_s + 130)
        finally:
            readyz = poller.stop()
    run: dict[str, Any] = {
        "saturation_rps": saturation_rps,
        "target_rate": rate,
        "env": env,
        "readyz": readyz,
        "wrk": load,
        "probe": probe,
    }
    non2xx = load["non2xx_by_status"]
    statuses = {"200": load["requests"] - load["non2xx"], **non2xx}
    answered = sum(statuses.values())
    summary: dict[str, Any] = {
        "statuses": statuses,
        "answered": answered,
        "sent_rps": answered / args.duration_s,
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
    run["summary"] = summary
    print(
        f"  statuses {statuses}; 429 share {summary['share_429'] or 0:.1%}; p99 all "
        f"{summary['p99_all_ms'] or float('nan'):.1f} ms; p99 accepted (probe) "
        f"{summary.get('p99_accepted_ms') or float('nan'):.1f} ms; readyz non-200 "
        f"{readyz['not_ready']}/{readyz['polls']}",
        flush=True,
    )
    return run


def best_rps(levels: Sequence[dict[str, Any]]) -> float | None:
    values = [r["rps"] for r in levels if r.get("rps")]
    return max(values) if values else None


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = set(sys.argv[1:] if argv is None else argv)
    if args.quick:
        if "--duration-s" not in given:
            args.duration_s = 1.0
        if "--warmup-s" not in given:
            args.warmup_s = 0.0
        if "--levels" not in given:
            args.levels = [1, 4]
        if "--ws-levels" not in given:
            args.ws_levels = [10]
        if "--ws-rates" not in given:
            args.ws_rates = [20]
        if "--overload-connections" not in given:
            args.overload_connections = 128
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    args.model = args.model.resolve()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    args.raw.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile(max(65536, 4 * max(args.ws_levels or [1]) + 1024))
    command = shlex.join(
        [
            Path(sys.executable).name,
            "-m",
            "bench.http.orchestrator",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    doc: dict[str, Any] = {
        "command": command,
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "nofile": nofile,
        "settings": {
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
        },
        "parts": {},
    }
    print(f"{command}\n{doc['machine']['nproc']} CPUs, {doc['machine']['cpu_model']}", flush=True)
    parts = doc["parts"]

    def saturation() -> float | None:
        if args.saturation_rps:
            return float(args.saturation_rps)
        predict = parts.get("predict", {})
        return best_rps(predict.get("batching_on", {}).get("levels", []))

    steps = [
        ("predict", lambda: part_predict(args)),
        ("echo", lambda: part_echo(args)),
        ("ws", lambda: part_ws(args)),
        ("ws_rates", lambda: part_ws_rates(args)),
        ("overload", lambda: part_overload(args, saturation())),
    ]
    failed = False
    try:
        for name, step in steps:
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
    doc["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (args.out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")

    from bench.http.report import write_report

    report = write_report(doc, args.out)
    print(f"\nwrote {args.out / 'results.json'}, {report} and plots", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
