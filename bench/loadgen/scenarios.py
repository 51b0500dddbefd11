"""What one request of each scenario sends, as ``shared/API.md`` specifies: the op table.

The one-shot HTTP scenarios (predict, score, feed) are here; the timing and per-worker
state are in ``bench.loadgen.context``, the streaming scenarios in
``bench.loadgen.streaming``, set-up and teardown in ``bench.loadgen.lifecycle`` (re-exported
here, where the driver imports them from).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from bench.loadgen.config import RunConfig
from bench.loadgen.context import Context, ensure_session, timed_http
from bench.loadgen.lifecycle import setup, teardown
from bench.loadgen.streaming import op_generate, op_ws

__all__ = ["OPS", "Context", "Op", "make_op", "setup", "teardown"]


async def op_predict(ctx: Context, slot: int, scheduled: float) -> None:
    body = {"text": ctx.texts.prefix(), "k": ctx.config.k}
    await timed_http(ctx, "predict", scheduled, "POST", "/v1/predict", body)


async def op_score(ctx: Context, slot: int, scheduled: float) -> None:
    await timed_http(ctx, "score", scheduled, "POST", "/v1/score", {"text": ctx.texts.sentence()})


async def op_feed(ctx: Context, slot: int, scheduled: float) -> None:
    session_id = await ensure_session(ctx, slot)
    if session_id is None:
        ctx.recorder.error("feed", ctx.rel(scheduled), "client:no_session")
        return
    body = {"text": ctx.texts.next_word(), "k": ctx.config.k}
    path = f"/v1/sessions/{session_id}/feed"
    _, code = await timed_http(ctx, "feed", scheduled, "POST", path, body)
    if code == "session_not_found":
        ctx.sessions[slot] = None  # expired or evicted: the next feed makes a new one


Op = Callable[[Context, int, float], Awaitable[None]]
OPS: dict[str, Op] = {
    "predict": op_predict,
    "score": op_score,
    "feed": op_feed,
    "generate": op_generate,
    "ws": op_ws,
}


def make_op(config: RunConfig) -> Op:
    """The per-request coroutine of ``config.scenario``; ``mix`` draws one by weight."""
    if config.scenario != "mix":
        return OPS[config.scenario]
    names = [name for name, weight in config.mix.items() if weight > 0]
    weights = [config.mix[name] for name in names]
    rng = random.Random(config.seed + 7919)

    async def op_mix(ctx: Context, slot: int, scheduled: float) -> None:
        await OPS[rng.choices(names, weights)[0]](ctx, slot, scheduled)

    return op_mix
