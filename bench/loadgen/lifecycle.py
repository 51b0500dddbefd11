"""Before and after the timed phase: open sessions, streams and connections; delete them.

So that the timed phase measures feeds, not set-up, and a run leaves no sessions behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx

from bench.loadgen.context import Context, ensure_session
from bench.loadgen.streaming import ensure_stream

SETUP_PARALLELISM = 32
PRECONNECT_TIMEOUT_S = 10.0


async def setup(ctx: Context) -> None:
    """Create each slot's session or stream up front, so the timed phase measures feeds."""
    n = ctx.config.concurrency
    ctx.sessions, ctx.streams = [None] * n, [None] * n
    ctx.locks = [asyncio.Lock() for _ in range(n)]
    scenario, mix = ctx.config.scenario, ctx.config.mix
    prepare: Callable[[Context, int], Awaitable[object]] | None = None
    if scenario == "ws":
        prepare = ensure_stream
    elif scenario == "feed" or (scenario == "mix" and mix.get("feed", 0) > 0):
        prepare = ensure_session
    if ctx.config.preconnect and scenario != "ws":
        await preconnect(ctx)
    if prepare is None:
        return
    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def one(slot: int) -> None:
        async with gate:
            await prepare(ctx, slot)

    await asyncio.gather(*(one(slot) for slot in range(n)))


async def preconnect(ctx: Context) -> None:
    """Open the whole HTTP pool before the timed phase (``concurrency`` GETs at once), so
    that no measured request waits for a connection to be set up: a server too busy to
    accept new connections would otherwise show as seconds of latency."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(
                *(ctx.client.get("/healthz") for _ in range(ctx.config.concurrency)),
                return_exceptions=True,
            ),
            PRECONNECT_TIMEOUT_S,
        )


async def teardown(ctx: Context, timeout_s: float) -> None:
    """Delete what setup made (best effort, bounded by ``timeout_s``)."""
    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def delete(session_id: str) -> None:
        async with gate:
            with contextlib.suppress(httpx.HTTPError):
                await ctx.client.delete(f"/v1/sessions/{session_id}")

    jobs: list[Awaitable[None]] = [delete(s) for s in ctx.sessions if s is not None]
    jobs += [s.close() for s in ctx.streams if s is not None]
    if not jobs:
        return
    tasks = [asyncio.ensure_future(job) for job in jobs]
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
