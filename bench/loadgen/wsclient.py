"""A lean ``WS /v1/stream`` client that can pipeline: many feeds in flight per socket.

Load must come from a client cheaper than the server. The ``websockets`` library's client
cost this tool ~215 us of CPU per feed (two processes at 0.22 cores each for 2,080
feeds/s, BENCHMARKS §0), a fifth of the 2-CPU box the server was measured on; this one
speaks RFC 6455 over a bare ``asyncio.Protocol`` (upgrade, masked client frames, pings,
close, fragments), parses with orjson and calls back once per request (``send``; or
``request`` awaits a future), matched by the ``id`` the server echoes (or, failing that, in
order: a session answers in arrival order).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.loadgen.wsconnection import CLOSE, TEXT, Connection, WsError

# Gets a request's outcome once: the answer, a WsError, or the error it was given up with.
Answered = Callable[[Any], None]


class WsStream:
    """One stream (one server session). Use :meth:`open`, then :meth:`request`, :meth:`close`."""

    def __init__(self, conn: Connection, ready: dict[str, Any]) -> None:
        self.conn = conn
        self.session_id: str = str(ready.get("session_id", ""))
        self._ids = itertools.count()
        self._pending: OrderedDict[str, Answered] = OrderedDict()
        conn.on_text = self._on_text
        conn.lost.add_done_callback(lambda _: self._fail_pending())

    @classmethod
    async def open(cls, url: str, headers: dict[str, str], timeout_s: float) -> WsStream:
        """Connect and wait for ``ready``; raise :class:`WsError` on any refusal."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        loop = asyncio.get_running_loop()
        first: asyncio.Future[bytes] = loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(request, key),
                    host,
                    port,
                    ssl=ssl.create_default_context() if secure else None,
                )
                conn.on_text = lambda raw: first.done() or first.set_result(raw)
                await conn.upgraded
                ready = orjson.loads(await first)
        except WsError:
            raise
        except (OSError, TimeoutError, ValueError) as exc:
            raise WsError("client:connect", 0, repr(exc)) from exc
        if ready.get("type") != "ready":
            if conn.transport is not None:
                conn.transport.close()
            raise WsError(str(ready.get("code", "client:protocol")), 0, str(ready))
        return cls(conn, ready)

    def _on_text(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        kind = message.get("type")
        if kind not in ("predictions", "error"):
            return  # ready after reset, forked, etc.
        if message.get("id") is not None:  # an answer to a timed-out request is dropped
            answered = self._pending.pop(str(message["id"]), None)
        elif self._pending:  # no id echoed: the session answers in order
            answered = self._pending.popitem(last=False)[1]
        else:
            return
        if answered is not None:
            if kind == "error":
                answered(WsError(str(message.get("code", "client:protocol")), 0, str(message)))
            else:
                answered(message)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, OrderedDict()
        for answered in pending.values():
            answered(WsError("client:closed"))

    @property
    def alive(self) -> bool:
        return not self.conn.lost.done()

    def send(self, message: dict[str, Any], answered: Answered) -> str:
        """Send ``message`` with a fresh ``id`` (returned); ``answered`` gets its
        ``predictions`` answer, a :class:`WsError`, or what ``give_up`` passes. No future,
        task or timer per request: an open-loop client sends thousands a second."""
        if not self.alive:
            raise WsError("client:closed")
        request_id = str(next(self._ids))
        self._pending[request_id] = answered
        self.conn.send(TEXT, orjson.dumps({**message, "id": request_id}))
        return request_id

    def give_up(self, request_id: str, error: BaseException) -> None:
        """Stop waiting for ``request_id`` (if still unanswered): ``answered(error)``."""
        answered = self._pending.pop(request_id, None)
        if answered is not None:
            answered(error)

    async def request(self, message: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """Send ``message`` with a fresh ``id``; return its ``predictions`` answer.

        Raises:
            WsError: the server answered ``{"type": "error"}`` or the socket closed.
            TimeoutError: no answer within ``timeout_s`` (one timer, no extra task).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()

        def answered(outcome: Any) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        request_id = self.send(message, answered)
        timer = loop.call_later(timeout_s, self.give_up, request_id, TimeoutError())
        try:
            return await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)

    async def close(self, delete_session: bool = True) -> None:
        """Say ``close`` (the server deletes the session) and wait briefly for the socket."""
        with contextlib.suppress(WsError):
            if delete_session:
                self.conn.send(TEXT, b'{"type":"close"}')
            self.conn.send(CLOSE, (1000).to_bytes(2, "big"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.conn.lost
        if self.conn.transport is not None:
            self.conn.transport.close()
