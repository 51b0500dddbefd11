"""A ZeroMQ socket driven by the event loop's reader callback instead of pyzmq's futures.

Why: ``zmq.asyncio`` wraps every receive and send in a future plus poller bookkeeping
(``_add_recv_event``, ``_handle_events``, ``_add_send_event``). Under HTTP predict load on
the lent H200 the engine's event loop was the bottleneck, and that bookkeeping was about a
fifth of its time (py-spy, BENCHMARKS §0.6). A plain socket whose high-water marks are off
never blocks on a send; its file descriptor signals, edge-triggered, that messages may be
waiting. So: drain until ``EAGAIN`` on every signal, a bounded batch per callback so that
the loop's other callbacks interleave, and look again after each send, since ZeroMQ may
consume the edge while it sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import zmq

log = logging.getLogger(__name__)
DRAIN_BATCH = 256  # messages read per callback before the loop's other callbacks run


class LoopSocket:
    """One ZeroMQ socket (``kind``: ``zmq.ROUTER``, ``zmq.DEALER``…) read by the running
    loop: ``on_message`` gets each multipart message's frames, on the loop thread."""

    def __init__(self, kind: int, on_message: Callable[[list[bytes]], None]) -> None:
        self._context = zmq.Context()
        self.socket = self._context.socket(kind)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # unlimited: a send never blocks
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False
        self._reading = False

    def start(self) -> None:
        """Start reading on the running loop (after ``bind`` or ``connect``)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.socket.FD, self._drain)
        self._reading = True
        self._schedule_drain()  # messages that arrived before the reader was added

    def send(self, frames: list[bytes]) -> None:
        """Queue one multipart message; never blocks (high-water mark off)."""
        self.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        if int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self._schedule_drain()

    def stop_reading(self) -> None:
        """No more ``on_message`` calls; sends still work (the last replies)."""
        if self._loop is not None and not self.socket.closed:
            self._loop.remove_reader(self.socket.FD)
        self._reading = False

    def close(self) -> None:
        self.stop_reading()
        self.socket.close()
        self._context.term()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        socket, on_message = self.socket, self._on_message
        if not self._reading or socket.closed:
            return
        for _ in range(DRAIN_BATCH):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                on_message(frames)
            except Exception:  # one bad message must not stop the reading
                log.exception("could not handle a message")
        self._schedule_drain()  # more may be waiting: read it after the others' turn


__all__ = ["DRAIN_BATCH", "LoopSocket"]
