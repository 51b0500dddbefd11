"""The streaming scenarios: SSE generation (``generate``) and WebSocket feeds (``ws``).

Apart from the one-shot HTTP scenarios because a stream is timed to its first word and its
last event, and a WebSocket is a per-slot connection opened (and reopened) on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
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


class DirectFeeds:
    """Open-loop WebSocket feeds sent on an open stream without a task each.

    ``op_ws`` in a task per arrival (with the slot's lock, a future and a timer) made the
    open-loop client cost 0.51 cores against the closed loop's 0.34 at ~3,000 feeds/s
    (BENCHMARKS §0.7), on the two cores the server was measured on. Here a feed is one
    ``WsStream.send`` whose callback records it; deadlines are kept in arrival order and
    swept (``sweep``), as the engine does its own. A slot whose stream is not open yet
    goes the long way (``op_ws``, which opens it).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.in_flight = 0
        self._due: deque[tuple[float, WsStream, str]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()

    def send(self, slot: int, scheduled: float) -> bool:
        """Feed one word on ``slot``'s stream now; False: it is not open (use ``op_ws``)."""
        ctx = self.ctx
        stream = ctx.streams[slot]
        if stream is None or not stream.alive or ctx.locks[slot].locked():
            return False
        started = ctx.rel(scheduled)
        recorder = ctx.recorder

        def answered(outcome: Any) -> None:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
            if isinstance(outcome, WsError):
                recorder.error("ws_feed", started, outcome.code, outcome.status)
            elif isinstance(outcome, TimeoutError):
                recorder.error("ws_feed", started, "client:timeout")
            elif isinstance(outcome, BaseException):
                recorder.error("ws_feed", started, "client:unfinished")
            else:
                recorder.ok("ws_feed", started, time.perf_counter() - scheduled)

        message = {"type": "feed", "text": ctx.texts.next_word(), "k": ctx.config.k}
        request_id = stream.send(message, answered)
        self.in_flight += 1
        self._idle.clear()
        self._due.append((time.perf_counter() + ctx.config.timeout_s, stream, request_id))
        return True

    def sweep(self) -> None:
        """Give up on the feeds past their deadline (``client:timeout``)."""
        now, due = time.perf_counter(), self._due
        while due and due[0][0] <= now:
            _, stream, request_id = due.popleft()
            stream.give_up(request_id, TimeoutError())

    async def sweep_forever(self, period_s: float = 0.1) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.sweep()

    async def finish(self, deadline: float) -> None:
        """Wait for the answers until ``deadline`` (``perf_counter``); the feeds still
        unanswered then count as ``client:unfinished``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                await self._idle.wait()
        while self._due:
            _, stream, request_id = self._due.popleft()
            stream.give_up(request_id, asyncio.CancelledError())
