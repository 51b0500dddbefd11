"""A minimal ``WS /v1/stream`` client that can pipeline: many feeds in flight per socket.

Open-loop load must send on schedule even while earlier answers are outstanding, so the
socket gets one reader task that resolves a future per request, matched by the ``id``
the server echoes (or, failing that, in order, since a session answers in arrival order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import OrderedDict
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException


class WsError(Exception):
    """A stream failure with a contract ``code`` (or ``client:...``) and HTTP ``status``."""

    def __init__(self, code: str, status: int = 0, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status


def _error_code(body: bytes | bytearray | None) -> str | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        return str(json.loads(body or b"")["error"]["code"])
    return None


class WsStream:
    """One stream (one server session). Use :meth:`open`, then :meth:`request`, :meth:`close`."""

    def __init__(self, conn: ClientConnection, ready: dict[str, Any]) -> None:
        self.conn = conn
        self.session_id: str = str(ready.get("session_id", ""))
        self._ids = itertools.count()
        self._pending: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, headers: dict[str, str], timeout_s: float) -> WsStream:
        """Connect and wait for ``ready``; raise :class:`WsError` on any refusal."""
        try:
            conn = await connect(
                url,
                additional_headers=headers,
                open_timeout=timeout_s,
                compression=None,
                proxy=None,
                max_queue=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise WsError(_error_code(exc.response.body) or f"http_{status}", status) from exc
        except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
            raise WsError("client:connect", 0, repr(exc)) from exc
        try:
            first = json.loads(await asyncio.wait_for(conn.recv(), timeout_s))
        except (ConnectionClosed, asyncio.TimeoutError, ValueError) as exc:
            await conn.close()
            raise WsError("client:no_ready", 0, repr(exc)) from exc
        if first.get("type") != "ready":
            await conn.close()
            raise WsError(str(first.get("code", "client:protocol")), 0, str(first))
        return cls(conn, first)

    async def _read(self) -> None:
        failure = WsError("client:closed")
        try:
            async for raw in self.conn:
                message = json.loads(raw)
                if message.get("type") not in ("predictions", "error"):
                    continue  # ready after reset, pings handled by the library, etc.
                if message.get("id") is not None:  # an answer to a timed-out request is dropped
                    future = self._pending.pop(str(message["id"]), None)
                elif self._pending:  # no id echoed: the session answers in order
                    future = self._pending.popitem(last=False)[1]
                else:
                    continue
                if future is not None and not future.done():
                    future.set_result(message)
        except (ConnectionClosed, ValueError) as exc:
            failure = WsError("client:closed", 0, repr(exc))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(failure)
            self._pending.clear()

    @property
    def alive(self) -> bool:
        return not self._reader.done()

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` with a fresh ``id``; return its ``predictions`` answer.

        Raises:
            WsError: the server answered ``{"type": "error"}`` or the socket closed.
        """
        if not self.alive:
            raise WsError("client:closed")
        request_id = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.conn.send(json.dumps({**message, "id": request_id}))
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise WsError("client:closed", 0, repr(exc)) from exc
        try:
            answer = await future
        finally:
            self._pending.pop(request_id, None)
        if answer.get("type") == "error":
            raise WsError(str(answer.get("code", "client:protocol")), 0, str(answer))
        return answer

    async def close(self, delete_session: bool = True) -> None:
        """Say ``close`` (the server deletes the session) and wait briefly for the socket."""
        with contextlib.suppress(ConnectionClosed, OSError):
            if delete_session:
                await self.conn.send(json.dumps({"type": "close"}))
            await self.conn.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WsError):
            await self._reader
