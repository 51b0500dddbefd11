"""The API process's end of the channel to the engine: a ZeroMQ DEALER socket.

Requests made during one event-loop turn leave in one message; replies are matched to
their callers by request id (a future for a call, a queue for a stream). If the engine
process dies, every waiting call fails with ``NotReady`` at once (a pidfd is watched).
``EngineClient`` (``service.engine.client``) speaks words on top of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from typing import Any

import zmq

from service.engine import errors, wire
from service.engine.errors import InvalidRequest, NotReady, ServeError, Timeout
from service.engine.loop_socket import LoopSocket

log = logging.getLogger(__name__)
GRACE_S = 5.0  # past the engine's own deadline, a call gives up on a wedged engine


class Channel:
    def __init__(self, address: str, request_timeout_s: float) -> None:
        self.address = address
        self.request_timeout_s = request_timeout_s
        self.dead_reason: str | None = None
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[wire.Reply]] = {}
        self._outbox: list[wire.Request] = []
        self._flush_scheduled = False
        # Made by open(): an app built but never started (a test) holds no ZeroMQ context.
        self._socket: LoopSocket | None = None
        self._pidfd: int | None = None

    def open(self) -> None:
        self._socket = LoopSocket(zmq.DEALER, self._receive)
        self._socket.socket.connect(self.address)
        self._socket.start()

    def watch(self, pid: int) -> None:
        """Notice the engine's death the moment it happens (Linux pidfd)."""
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(pid)
            asyncio.get_running_loop().add_reader(self._pidfd, self._engine_died)

    def _engine_died(self) -> None:
        self._stop_watching()
        self.fail_all("the engine process stopped")

    def fail_all(self, reason: str) -> None:
        """Mark the engine gone and fail every waiting call and stream."""
        self.dead_reason = reason
        log.error("engine unavailable: %s", reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NotReady(reason))
        self._pending.clear()
        for queue in self._streams.values():
            queue.put_nowait(wire.Failure(0, "not_ready", reason))

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def close(self) -> None:
        self._stop_watching()
        if self._socket is not None:
            self._socket.close()
        self._socket = None

    async def call(self, message: Any) -> Any:
        if self.dead_reason is not None:
            raise NotReady(self.dead_reason)
        if self._socket is None:
            raise NotReady("not connected to the engine")
        message.rid = rid = next(self._rids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = future
        self.send(message)
        # A plain timer, not wait_for: wait_for costs a task per call (10 % of an API
        # process's CPU under load, measured with py-spy).
        timer = loop.call_later(self.request_timeout_s + GRACE_S, _give_up, future)
        try:
            return await future
        except asyncio.CancelledError:
            if rid in self._pending:
                self.send(wire.Cancel(rid))
            raise
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    def start_stream(self, message: Any) -> tuple[int, asyncio.Queue[wire.Reply]]:
        """Send a streamed request (a generation): its replies arrive on the queue."""
        if self.dead_reason is not None:
            raise NotReady(self.dead_reason)
        message.rid = rid = next(self._rids)
        queue: asyncio.Queue[wire.Reply] = asyncio.Queue()
        self._streams[rid] = queue
        self.send(message)
        return rid, queue

    def send(self, message: Any) -> None:
        self._outbox.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox or self._socket is None:  # closed meanwhile: calls fail by timeout
            return
        try:
            payload = wire.ENCODER.encode(outbox)
        except (OverflowError, TypeError, ValueError):
            payload = wire.ENCODER.encode(self._encodable(outbox))
        self._socket.send([payload])

    def _encodable(self, outbox: list[Any]) -> list[Any]:
        """The messages that encode; the others' calls fail at once (a value the wire
        cannot carry, such as an integer past 64 bits, must not sink the whole batch)."""
        kept = []
        for message in outbox:
            try:
                wire.ENCODER.encode(message)
            except (OverflowError, TypeError, ValueError) as error:
                self._fail(message.rid, InvalidRequest(f"a value is out of range: {error}"))
                continue
            kept.append(message)
        return kept

    def _fail(self, rid: int, error: ServeError) -> None:
        future = self._pending.pop(rid, None)
        if future is not None and not future.done():
            future.set_exception(error)
        queue = self._streams.get(rid)
        if queue is not None:
            queue.put_nowait(wire.Failure(rid, error.code, error.message))

    def _receive(self, frames: list[bytes]) -> None:
        for reply in wire.REPLIES.decode(frames[0]):
            self._deliver(reply)

    def _deliver(self, reply: wire.Reply) -> None:
        queue = self._streams.get(reply.rid)
        if queue is not None:
            queue.put_nowait(reply)
            if isinstance(reply, wire.Done | wire.Failure):
                self._streams.pop(reply.rid, None)
            return
        future = self._pending.get(reply.rid)
        if future is None or future.done():
            return
        if isinstance(reply, wire.Result):
            future.set_result(reply.value)
        elif isinstance(reply, wire.Failure):
            future.set_exception(errors.from_code(reply.code, reply.message, reply.details))

    def forget_stream(self, rid: int, cancel: bool) -> None:
        if self._streams.pop(rid, None) is not None and cancel and self.dead_reason is None:
            self.send(wire.Cancel(rid))


def _give_up(future: asyncio.Future[Any]) -> None:
    """A wedged engine: the call fails with ``timeout`` rather than waiting for ever."""
    if not future.done():
        future.set_exception(Timeout("the engine did not answer in time"))
