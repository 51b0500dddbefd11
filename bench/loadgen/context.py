"""One timed HTTP request of the load generator, and the per-worker state it records into.

Every operation takes the time it was *scheduled* to start (``scheduled``, from
``perf_counter``); its latency runs from there to the end of the answer, so in open loop a
request that waited for a free connection, or behind a slow one, is charged that wait.
Also the slot's HTTP session (``ensure_session``), which set-up and the feed scenario share.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.loadgen.config import RunConfig
from bench.loadgen.stats import Recorder
from bench.loadgen.texts import TextSource
from bench.loadgen.wsclient import WsStream

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
