"""The streaming scenarios: SSE generation (``generate``) and WebSocket feeds (``ws``).

Apart from the one-shot HTTP scenarios because a stream is timed to its first word and its
last event, and a WebSocket is a per-slot connection opened (and reopened) on demand.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, NamedTuple

import httpx

from bench.loadgen.context import Context, client_code, error_code
from bench.loadgen.wsclient import WsError, WsStream


async def op_generate(ctx: Context, slot: int, scheduled: float) -> None:
    """Streamed generation: latency to the final event, time to first word, words/s."""
    cfg = ctx.config
    body = {
        "text": ctx.texts.prefix(),
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "seed": ctx.texts.seed(),
        "stream": True,
    }
    started = ctx.rel(scheduled)
    try:
        result = await asyncio.wait_for(_read_stream(ctx, body), cfg.timeout_s)
    except asyncio.CancelledError:
        ctx.recorder.error("generate", started, "client:unfinished")
        raise
    except (httpx.HTTPError, ValueError, asyncio.TimeoutError) as exc:
        ctx.recorder.error("generate", started, client_code(exc))
        return
    if not isinstance(result, StreamOutcome):
        ctx.recorder.error("generate", started, *result)
        return
    words, first, end = result
    ttft = None if first is None else first - scheduled
    wps = (words - 1) / (end - first) if first is not None and words > 1 and end > first else None
    ctx.recorder.ok("generate", started, end - scheduled, tokens=words, ttft_s=ttft, stream_wps=wps)


class StreamOutcome(NamedTuple):
    """A finished stream: words received, when the first came and when the last event did."""

    words: int
    first: float | None
    end: float


async def _read_stream(ctx: Context, body: dict[str, Any]) -> StreamOutcome | tuple[str, int]:
    """Read one SSE answer: its :class:`StreamOutcome`, or (error code, HTTP status).

    Bounded as a whole by the caller, since httpx's timeout is per read and a stream that
    trickles one word every few seconds would otherwise never time out.
    """
    first: float | None = None
    words = 0
    async with ctx.client.stream("POST", "/v1/generate", json=body) as response:
        status = response.status_code
        if status >= 400:
            await response.aread()
            return error_code(response), status
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if "error" in event:
                return str(event["error"].get("code", "client:protocol")), status
            if "finish_reason" in event:
                return StreamOutcome(words, first, time.perf_counter())
            if "word" in event:
                words += 1
                first = first if first is not None else time.perf_counter()
    return "client:truncated_stream", status


async def ensure_stream(ctx: Context, slot: int) -> WsStream | None:
    """The slot's WebSocket stream, (re)opened when missing or closed."""
    async with ctx.locks[slot]:
        stream = ctx.streams[slot]
        if stream is None or not stream.alive:
            start = time.perf_counter()
            cfg = ctx.config
            try:
                stream = await WsStream.open(cfg.ws_url, cfg.headers(), cfg.timeout_s)
            except WsError as exc:
                ctx.recorder.error("ws_connect", ctx.rel(start), exc.code, exc.status)
                stream = None
            else:
                ctx.recorder.ok("ws_connect", ctx.rel(start), time.perf_counter() - start)
            ctx.streams[slot] = stream
        return stream


async def op_ws(ctx: Context, slot: int, scheduled: float) -> None:
    """One word fed over the slot's stream; latency until its ``predictions`` arrive."""
    started = ctx.rel(scheduled)
    stream = await ensure_stream(ctx, slot)
    if stream is None:
        ctx.recorder.error("ws_feed", started, "client:no_stream")
        await asyncio.sleep(0.01)  # a refused connect must not turn into a hot loop
        return
    message = {"type": "feed", "text": ctx.texts.next_word(), "k": ctx.config.k}
    try:
        await stream.request(message, ctx.config.timeout_s)
    except asyncio.CancelledError:
        ctx.recorder.error("ws_feed", started, "client:unfinished")
        raise
    except WsError as exc:
        ctx.recorder.error("ws_feed", started, exc.code, exc.status)
        return
    except asyncio.TimeoutError:
        ctx.recorder.error("ws_feed", started, "client:timeout")
        return
    ctx.recorder.ok("ws_feed", started, time.perf_counter() - scheduled)
