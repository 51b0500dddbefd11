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
import hashlib
import itertools
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
MAX_HEAD_BYTES = 65536
# Gets a request's outcome once: the answer, a WsError, or the error it was given up with.
Answered = Callable[[Any], None]


class WsError(Exception):
    """A stream failure with a contract ``code`` (or ``client:...``) and HTTP ``status``."""

    def __init__(self, code: str, status: int = 0, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status


def _error_code(body: bytes | bytearray | None) -> str | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        return str(orjson.loads(body or b"")["error"]["code"])
    return None


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked as a client must (RFC 6455 §5.3) with a fresh key."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    keys = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return head + key + (int.from_bytes(payload, "big") ^ keys).to_bytes(n, "big")


class _Connection(asyncio.Protocol):
    """The socket: the upgrade, then frames; text messages go to ``on_text``."""

    def __init__(self, request: bytes, key: bytes) -> None:
        self.request = request
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.on_text: Any = None
        self._fragments: list[bytes] | None = None
        self._refusal: tuple[int, int] | None = None  # (status, body bytes expected)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refusal is not None:
            self._refuse(self._refusal[0])
        if not self.upgraded.done():
            self.upgraded.set_exception(WsError("client:connect", 0, repr(exc)))
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise WsError("client:closed")
        self.transport.write(client_frame(opcode, payload))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiting = not self.upgraded.done() or self._refusal is not None
        if waiting and not self._read_head():
            return
        self._read_frames()

    def _read_head(self) -> bool:
        """The upgrade answer: True once it was 101 (frames may follow in the buffer)."""
        if self._refusal is not None:
            if len(self.buffer) >= self._refusal[1]:
                self._refuse(self._refusal[0])
            return False
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._fail_upgrade(WsError("client:protocol", 0, "upgrade answer too long"))
            return False
        head, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        if status != 101:
            self._refusal = (status, int(headers.get("content-length", "0")))
            return self._read_head()
        if headers.get("sec-websocket-accept", "").encode() != self.accept:
            self._fail_upgrade(WsError("client:protocol", 101, "bad Sec-WebSocket-Accept"))
            return False
        self.upgraded.set_result(None)
        return True

    def _refuse(self, status: int) -> None:
        body, self._refusal = bytes(self.buffer), None
        self._fail_upgrade(WsError(_error_code(body) or f"http_{status}", status))

    def _fail_upgrade(self, error: WsError) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _read_frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            mask = b""
            if second & 0x80:  # servers do not mask; accept it anyway
                mask, offset = bytes(buffer[offset : offset + 4]), offset + 4
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if mask:
                keys = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
                payload = (int.from_bytes(payload, "big") ^ keys).to_bytes(length, "big")
            self._frame(first & 0x80, first & 0x0F, payload)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.send(PONG, payload)
        elif opcode == CLOSE:
            with contextlib.suppress(WsError):
                self.send(CLOSE, payload[:2])
            assert self.transport is not None
            self.transport.close()
        elif opcode == PONG:
            return
        elif opcode != 0 or self._fragments is not None:  # text, binary or a continuation
            parts = self._fragments if self._fragments is not None else []
            parts.append(payload)
            if not fin:
                self._fragments = parts
                return
            self._fragments = None
            if self.on_text is not None:
                self.on_text(b"".join(parts))


class WsStream:
    """One stream (one server session). Use :meth:`open`, then :meth:`request`, :meth:`close`."""

    def __init__(self, conn: _Connection, ready: dict[str, Any]) -> None:
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
                    lambda: _Connection(request, key),
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
