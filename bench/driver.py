"""Closed- and open-loop drivers for one worker process, bounded in time and request count.

Closed loop: ``concurrency`` users, each sending its next request when the previous one
answered (plus think time). Open loop: arrivals on a fixed schedule at ``rate`` per second
whatever the server does; each request's latency runs from its *scheduled* time, so a
server (or client) that falls behind shows as latency instead of silently sending less
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from bench.config import RunConfig
from bench.scenarios import Context, Op, make_op, setup, teardown
from bench.stats import Recorder
from bench.texts import TextSource

TEARDOWN_TIMEOUT_S = 10.0
PRIMARY_OP = {"ws": "ws_feed"}


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
    while True:
        yield t
        t += 1.0 / rate if arrival == "uniform" else rng.expovariate(rate)


async def finish(tasks: set[asyncio.Task[None]], deadline: float | None) -> None:
    """Wait for ``tasks`` until ``deadline`` (``perf_counter``), then cancel the rest.

    Cancelled operations record ``client:unfinished``: work the server never completed
    within the run plus its grace period.
    """
    if tasks:
        timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


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


async def open_loop(ctx: Context, op: Op, stop_at: float, budget: Budget) -> list[float]:
    """Send on the fixed schedule until ``stop_at`` or the budget; return each send's lag.

    The lag (actual minus scheduled send time) measures the client itself: if it grows,
    this process cannot keep up with the schedule and more ``--processes`` are needed.
    """
    cfg = ctx.config
    assert cfg.rate is not None
    inflight: set[asyncio.Task[None]] = set()
    lags: list[float] = []
    op_name = PRIMARY_OP.get(cfg.scenario, cfg.scenario)
    for index, offset in enumerate(arrival_offsets(cfg.rate, cfg.arrival, cfg.seed, cfg.phase_s)):
        scheduled = ctx.t0 + offset
        if scheduled >= stop_at or not budget.take():
            break
        delay = scheduled - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))  # sleep(0) still lets answers be processed
        lags.append(time.perf_counter() - scheduled)
        if len(inflight) >= cfg.max_inflight:
            ctx.recorder.error(op_name, ctx.rel(scheduled), "client:backlog")
            continue
        task = asyncio.ensure_future(op(ctx, index % cfg.concurrency, scheduled))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    await finish(set(inflight), time.perf_counter() + cfg.grace_s)
    return lags


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
    start and end of the timed phase, CPU seconds used and open-loop send lags.
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
        if cfg.open_loop:
            lags = await open_loop(ctx, op, stop_at, budget)
        else:
            await closed_loop(ctx, op, stop_at, budget)
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
        "dispatched": budget.taken,
    }
