"""Run one load level in this process or spread over worker processes, and merge results.

One Python process tops out at a few thousand requests or WebSocket messages per second
(it is mostly JSON and protocol framing); past that the *client* is the bottleneck. With
``processes > 1`` the users, rate and request budget are split across spawned workers that
start together (a barrier after their setup), and their raw records are merged here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import multiprocessing as mp
import queue
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from bench.loadgen.config import RunConfig
from bench.loadgen.driver import run_worker
from bench.loadgen.stats import Recorder, latency_summary_ms, percentile, summarize

T = TypeVar("T")
BARRIER_TIMEOUT_S = 300.0
# A client process above this share of one core was probably the bottleneck.
CPU_SATURATED = 0.85
# ... or one whose event loop woke this late (p99), busy or starved of CPU.
LOOP_LAG_BUSY_S = 0.02


def loop_in_use(name: str) -> str:
    """The event loop a client process runs: ``auto`` is uvloop where it is installed."""
    if name != "auto":
        return name
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run_in_loop(name: str, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the client's event loop. uvloop's transports cost the WebSocket
    client about a third less CPU per feed than asyncio's (BENCHMARKS §0.3), CPU that
    the server shares on a small box."""
    if loop_in_use(name) == "asyncio":
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


def _worker_main(cfg: RunConfig, barrier: Any, results: Any, index: int) -> None:
    """Entry point of a spawned worker: run its share, put ``(index, result)`` on the queue."""
    try:
        result = run_in_loop(cfg.loop, run_worker(cfg, lambda: barrier.wait(BARRIER_TIMEOUT_S)))
    except BaseException as exc:  # reported by the parent; the worker must not hang it
        barrier.abort()
        results.put((index, {"failed": repr(exc)}))
        return
    results.put((index, result))


def _run_processes(cfg: RunConfig) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")  # no forked event loops or sockets
    parts = cfg.processes
    barrier = ctx.Barrier(parts)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main, args=(cfg.share(i, parts), barrier, results, i), daemon=True
        )
        for i in range(parts)
    ]
    for proc in procs:
        proc.start()
    # Time-bounded runs get a hard limit here too; request-bounded ones end by themselves
    # (every request has a timeout), however long that takes.
    deadline = math.inf
    if cfg.duration_s is not None:
        deadline = time.monotonic() + BARRIER_TIMEOUT_S + cfg.duration_s + cfg.grace_s + 120.0
    out: dict[int, dict[str, Any]] = {}
    try:
        while len(out) < parts and time.monotonic() < deadline:
            try:
                index, result = results.get(timeout=1.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a load worker process died") from None
                continue
            out[index] = result
    finally:
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
    failed = [r["failed"] for r in out.values() if "failed" in r]
    if failed or len(out) < parts:
        raise RuntimeError(f"load workers failed: {failed or 'timed out'}")
    return [out[i] for i in range(parts)]


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run ``cfg`` and return its JSON-ready result (see ``docs/LOADTEST.md``)."""
    parts = [run_in_loop(cfg.loop, run_worker(cfg))] if cfg.processes == 1 else _run_processes(cfg)
    return merge(cfg, parts)


def merge(cfg: RunConfig, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge worker results: records first, then percentiles over all samples."""
    recorder = Recorder()
    lags: list[float] = []
    loop_lags: list[float] = []
    for part in parts:
        recorder.merge(Recorder.from_raw(part["recorder"]))
        lags.extend(part["lags_s"])
        loop_lags.extend(part["loop_lags_s"])
    start = min(p["start_wall"] for p in parts)
    end = max(p["end_wall"] for p in parts)
    window_s = max(0.0, end - start - cfg.warmup_s)
    utils = [p["cpu_s"] / p["wall_s"] if p["wall_s"] > 0 else 0.0 for p in parts]
    result: dict[str, Any] = {
        "scenario": cfg.scenario,
        "mode": "open" if cfg.open_loop else "closed",
        "concurrency": cfg.concurrency,
        "rate": cfg.rate,
        "processes": cfg.processes,
        "loop": loop_in_use(cfg.loop),
        "elapsed_s": end - start,
        "window_s": window_s,
        "dispatched": sum(p["dispatched"] for p in parts),
        "skipped_warmup": recorder.skipped_warmup,
        "ops": summarize(recorder, window_s),
        "client": {
            "cpu_s": sum(p["cpu_s"] for p in parts),
            "cpu_util_per_process": utils,
            "loop_lag_ms": latency_summary_ms(loop_lags),
            "saturated": max(utils) > CPU_SATURATED
            or percentile(sorted(loop_lags), 99) > LOOP_LAG_BUSY_S,
        },
    }
    if cfg.open_loop:
        result["schedule_lag_ms"] = latency_summary_ms(lags)
    return result
