"""Graceful shutdown: refuse new work, let in-flight requests finish, close streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
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
        self.flush: Callable[[], Awaitable[None]] | None = None  # stores session states
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
        """Stop taking work, store session states, close streams with 1012 (the client
        reconnects elsewhere and resumes from the store), wait for requests, store again."""
        self.draining = True
        started = time.monotonic()
        log.info("draining: %d requests in flight, %d streams", self.inflight, len(self.streams))
        await self._flush()  # before the 1012s, so a reconnecting client finds the newest state
        for stream in list(self.streams):
            with contextlib.suppress(Exception):
                await stream.close(SERVICE_RESTART, "server draining")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        await self._flush()
        log.info("drained in %.2fs (%d requests left)", time.monotonic() - started, self.inflight)

    async def _flush(self) -> None:
        if self.flush is None:
            return
        try:
            await self.flush()
        except Exception:  # logged by the store glue; draining goes on
            log.exception("storing session states on drain failed")
