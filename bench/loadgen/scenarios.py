"""What one request of each scenario sends, as ``shared/API.md`` specifies, and how it is timed.

Every operation takes the time it was *scheduled* to start (``scheduled``, from
``perf_counter``); its latency runs from there to the end of the answer, so in open loop a
request that waited for a free connection, or behind a slow one, is charged that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

from bench.loadgen.config import RunConfig
from bench.loadgen.stats import Recorder
from bench.loadgen.texts import TextSource
from bench.loadgen.wsclient import WsError, WsStream

SETUP_PARALLELISM = 32
# Which key a successful answer must carry; a 2xx without it is a contract violation.
REQUIRED_KEY = {
    "predict": "predictions",
    "score": "logprob",
    "feed": "predictions",
    "session_create": "session_id",
}


@dataclass
class Context:
    """Per-worker state: client, recorder, texts and the per-slot sessions or streams."""

    config: RunConfig
    client: httpx.AsyncClient
    recorder: Recorder
    texts: TextSource
    t0: float = 0.0
    sessions: list[str | None] = field(default_factory=list)
    streams: list[WsStream | None] = field(default_factory=list)
    locks: list[asyncio.Lock] = field(default_factory=list)

    def rel(self, t: float) -> float:
        return t - self.t0


def client_code(exc: BaseException) -> str:
    """A stable error code for failures that never got an answer from the server."""
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return "client:timeout"
    if isinstance(exc, httpx.ConnectError):
        return "client:connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "client:protocol"
    if isinstance(exc, ValueError):
        return "client:bad_json"
    return f"client:{type(exc).__name__}"


def error_code(response: httpx.Response) -> str:
    """The contract code of an error answer (``error.code``), else ``http_<status>``."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


async def timed_http(
    ctx: Context,
    op: str,
    scheduled: float,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """One request, recorded under ``op``: (JSON answer, "") on success, else (None, code)."""
    started = ctx.rel(scheduled)
    try:
        response = await ctx.client.request(method, path, json=body)
        latency = time.perf_counter() - scheduled
        if response.status_code >= 400:
            code = error_code(response)
            ctx.recorder.error(op, started, code, response.status_code)
            return None, code
        answer: dict[str, Any] = response.json() if response.content else {}
    except asyncio.CancelledError:
        ctx.recorder.error(op, started, "client:unfinished")
        raise
    except (httpx.HTTPError, ValueError) as exc:
        code = client_code(exc)
        ctx.recorder.error(op, started, code)
        return None, code
    key = REQUIRED_KEY.get(op)
    if key is not None and key not in answer:
        ctx.recorder.error(op, started, "client:bad_body", response.status_code)
        return None, "client:bad_body"
    ctx.recorder.ok(op, started, latency)
    return answer, ""


async def op_predict(ctx: Context, slot: int, scheduled: float) -> None:
    body = {"text": ctx.texts.prefix(), "k": ctx.config.k}
    await timed_http(ctx, "predict", scheduled, "POST", "/v1/predict", body)


async def op_score(ctx: Context, slot: int, scheduled: float) -> None:
    await timed_http(ctx, "score", scheduled, "POST", "/v1/score", {"text": ctx.texts.sentence()})


async def ensure_session(ctx: Context, slot: int) -> str | None:
    """The slot's HTTP session, created on first use or after it was lost."""
    async with ctx.locks[slot]:
        if ctx.sessions[slot] is None:
            start = time.perf_counter()
            answer, _ = await timed_http(
                ctx, "session_create", start, "POST", "/v1/sessions", {"k": ctx.config.k}
            )
            ctx.sessions[slot] = None if answer is None else str(answer["session_id"])
        return ctx.sessions[slot]


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
        await asyncio.wait_for(stream.request(message), ctx.config.timeout_s)
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


PRECONNECT_TIMEOUT_S = 10.0


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
