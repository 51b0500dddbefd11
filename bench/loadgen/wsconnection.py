"""RFC 6455 for the load generator's WebSocket client: the upgrade, masked client frames,
pings, close and fragments over a bare ``asyncio.Protocol`` (``wsclient.WsStream`` speaks
the stream protocol on top)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from typing import Any, cast

import orjson

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
MAX_HEAD_BYTES = 65536


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


class Connection(asyncio.Protocol):
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
