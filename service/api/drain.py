"""Graceful shutdown: refuse new work, let in-flight requests finish, close streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

log = logging.getLogger(__name__)

GOING_AWAY = 1001
SERVICE_RESTART = 1012


class Closable(Protocol):
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Drain:
    """Tracks in-flight HTTP requests and open WebSockets; ``drain()`` empties both."""

    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self.streams: set[Closable] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def exit(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Stop taking work, close streams with 1012 (reconnect elsewhere), wait for requests."""
        self.draining = True
        started = time.monotonic()
        log.info("draining: %d requests in flight, %d streams", self.inflight, len(self.streams))
        for stream in list(self.streams):
            with contextlib.suppress(Exception):
                await stream.close(SERVICE_RESTART, "server draining")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        log.info("drained in %.2fs (%d requests left)", time.monotonic() - started, self.inflight)
