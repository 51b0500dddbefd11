"""Closed- and open-loop drivers for one worker process, bounded in time and request count.

Closed loop: ``concurrency`` users, each sending its next request when the previous one
answered (plus think time). Open loop: arrivals on a fixed schedule at ``rate`` per second
whatever the server does; each request's latency runs from its *scheduled* time, so a
server (or client) that falls behind shows as latency instead of silently sending less
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from bench.loadgen.config import RunConfig
from bench.loadgen.scenarios import Context, Op, make_op, setup, teardown
from bench.loadgen.stats import Recorder
from bench.loadgen.streaming import DirectFeeds
from bench.loadgen.texts import TextSource

TEARDOWN_TIMEOUT_S = 10.0
PRIMARY_OP = {"ws": "ws_feed"}
LAG_PROBE_PERIOD_S = 0.01
CATCH_UP_BURST = 32  # arrivals sent back to back, at most, by a client behind its schedule


class Budget:
    """The request count still allowed (``None``: unlimited), shared by all users."""

    def __init__(self, requests: int | None) -> None:
        self.limit = requests
        self.taken = 0

    def take(self) -> bool:
        if self.limit is not None and self.taken >= self.limit:
            return False
        self.taken += 1
        return True


def arrival_offsets(rate: float, arrival: str, seed: int, phase_s: float = 0.0) -> Iterator[float]:
    """Endless send times (seconds after the start) at ``rate`` per second.

    ``uniform`` spaces arrivals exactly ``1/rate`` apart; ``poisson`` draws exponential
    gaps from a seeded generator, so both schedules are fixed before the run starts and
    independent of how fast the server answers.
    """
    rng = random.Random(seed)
    t = phase_s
    for index in itertools.count():
        yield t
        # Uniform times are computed, not summed, so float error cannot add an arrival.
        t = phase_s + (index + 1) / rate if arrival == "uniform" else t + rng.expovariate(rate)


async def finish(tasks: set[asyncio.Task[None]], deadline: float | None) -> None:
    """Wait for ``tasks`` until ``deadline`` (``perf_counter``), then cancel the rest.

    Cancelled operations record ``client:unfinished``: work the server never completed
    within the run plus its grace period. A task that *failed* is a bug in the load
    generator, not a server error: it is raised rather than lost.
    """
    if tasks:
        timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()


async def closed_loop(ctx: Context, op: Op, stop_at: float, budget: Budget) -> None:
    """``concurrency`` users, each one request at a time, until ``stop_at`` or the budget."""
    cfg = ctx.config

    async def user(slot: int) -> None:
        rng = random.Random(cfg.seed * 7 + slot)
        while time.perf_counter() < stop_at and budget.take():
            await op(ctx, slot, time.perf_counter())
            if cfg.think_s > 0:  # jittered, so users do not march in lockstep
                await asyncio.sleep(cfg.think_s * rng.uniform(0.5, 1.5))

    tasks = {asyncio.ensure_future(user(slot)) for slot in range(cfg.concurrency)}
    await finish(tasks, None if math.isinf(stop_at) else stop_at + cfg.grace_s)


def gated(ctx: Context, op: Op, gate: asyncio.Semaphore | None, op_name: str) -> Op:
    """``op`` behind a FIFO gate of ``concurrency`` slots (``None``: no gate).

    Open-loop arrivals beyond the pool wait here, in O(1) per request, rather than inside
    httpx's connection pool, whose wait list costs O(n) per event and would make the
    client the bottleneck under overload. The wait is still part of the latency, which
    runs from the scheduled time.
    """
    if gate is None:
        return op

    async def run(ctx: Context, slot: int, scheduled: float) -> None:
        try:
            await gate.acquire()
        except asyncio.CancelledError:
            ctx.recorder.error(op_name, ctx.rel(scheduled), "client:unfinished")
            raise
        try:
            await op(ctx, slot, scheduled)
        finally:
            gate.release()

    return run


async def open_loop(
    ctx: Context, op: Op, stop_at: float, budget: Budget
) -> tuple[list[float], int]:
    """Send on the fixed schedule until ``stop_at`` or the budget: (each send's lag, sent).

    The lag (actual minus scheduled send time) measures the client itself: if it grows,
    this process cannot keep up with the schedule and more ``--processes`` are needed.
    Arrivals still unsent when the clock passes ``stop_at`` count as ``client:not_sent``,
    so a lagging client cannot stretch the run or hide the arrivals it never made.
    """
    cfg = ctx.config
    assert cfg.rate is not None
    inflight: set[asyncio.Task[None]] = set()
    lags: list[float] = []
    sent = 0
    op_name = PRIMARY_OP.get(cfg.scenario, cfg.scenario)
    # WebSocket feeds pipeline on their session's socket; HTTP requests share a pool.
    gate = None if cfg.scenario == "ws" else asyncio.Semaphore(cfg.concurrency)
    send = gated(ctx, op, gate, op_name)
    failures: list[BaseException] = []
    direct = DirectFeeds(ctx) if cfg.scenario == "ws" else None  # feeds with no task
    sweeper = None if direct is None else asyncio.ensure_future(direct.sweep_forever())

    def settle(task: asyncio.Task[None]) -> None:
        inflight.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failures.append(error)

    for index, offset in enumerate(arrival_offsets(cfg.rate, cfg.arrival, cfg.seed, cfg.phase_s)):
        scheduled = ctx.t0 + offset
        if scheduled >= stop_at or not budget.take():
            break
        if time.perf_counter() >= stop_at:
            ctx.recorder.error(op_name, ctx.rel(scheduled), "client:not_sent")
            continue
        delay = scheduled - time.perf_counter()
        if delay > 0 or index % CATCH_UP_BURST == 0:  # behind: send a burst, then yield
            await asyncio.sleep(max(0.0, delay))  # sleep(0) still lets answers be processed
        lags.append(time.perf_counter() - scheduled)
        in_flight = len(inflight) + (direct.in_flight if direct is not None else 0)
        if in_flight >= cfg.max_inflight:
            ctx.recorder.error(op_name, ctx.rel(scheduled), "client:backlog")
            continue
        sent += 1
        slot = index % cfg.concurrency
        if direct is not None and direct.send(slot, scheduled):
            continue
        task = asyncio.ensure_future(send(ctx, slot, scheduled))
        inflight.add(task)
        task.add_done_callback(settle)
    deadline = time.perf_counter() + cfg.grace_s
    await finish(set(inflight), deadline)
    if direct is not None and sweeper is not None:
        await direct.finish(deadline)
        sweeper.cancel()
    if failures:
        raise failures[0]
    return lags, sent


async def probe_loop_lag(lags: list[float], period_s: float = LAG_PROBE_PERIOD_S) -> None:
    """Record how late ``asyncio.sleep(period_s)`` wakes up, until cancelled.

    The client's own event-loop lag: high when this process is CPU-bound *or* starved of
    CPU by other processes (which its CPU share alone would not show). Any latency the
    client reports is uncertain by about this much.
    """
    while True:
        start = time.perf_counter()
        await asyncio.sleep(period_s)
        lags.append(time.perf_counter() - start - period_s)


def http_client(cfg: RunConfig) -> httpx.AsyncClient:
    """A pooled client for ``cfg.url`` only: no proxies from the environment, one pool."""
    limits = httpx.Limits(
        max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
    )
    return httpx.AsyncClient(
        base_url=cfg.url,
        headers=cfg.headers(),
        limits=limits,
        timeout=httpx.Timeout(cfg.timeout_s),
        trust_env=False,
    )


async def run_worker(cfg: RunConfig, sync: Callable[[], Any] | None = None) -> dict[str, Any]:
    """One worker's whole run: set up sessions, (sync with siblings,) drive, tear down.

    Returns plain data (picklable) for the parent to merge: the raw recorder, wall-clock
    start and end of the timed phase, CPU seconds used, open-loop send lags and the event
    loop's lag.
    """
    async with http_client(cfg) as client:
        ctx = Context(cfg, client, Recorder(), TextSource(cfg.seed))
        ctx.t0 = time.perf_counter()
        await setup(ctx)
        setup_recorder = ctx.recorder
        if sync is not None:
            await asyncio.to_thread(sync)
        ctx.recorder = Recorder(warmup_until_s=cfg.warmup_s)
        ctx.t0 = time.perf_counter()
        start_wall, cpu0 = time.time(), time.process_time()
        stop_at = ctx.t0 + cfg.duration_s if cfg.duration_s is not None else math.inf
        budget = Budget(cfg.requests)
        op = make_op(cfg)
        lags: list[float] = []
        loop_lags: list[float] = []
        probe = asyncio.ensure_future(probe_loop_lag(loop_lags))
        try:
            if cfg.open_loop:
                lags, sent = await open_loop(ctx, op, stop_at, budget)
            else:
                await closed_loop(ctx, op, stop_at, budget)
                sent = budget.taken
        finally:
            probe.cancel()
        end = time.perf_counter()
        cpu_s = time.process_time() - cpu0
        await teardown(ctx, min(cfg.grace_s, TEARDOWN_TIMEOUT_S))
    ctx.recorder.merge(setup_recorder)
    return {
        "recorder": ctx.recorder.to_raw(),
        "start_wall": start_wall,
        "end_wall": start_wall + (end - ctx.t0),
        "cpu_s": cpu_s,
        "wall_s": end - ctx.t0,
        "lags_s": lags,
        "loop_lags_s": loop_lags,
        "dispatched": sent,
    }
