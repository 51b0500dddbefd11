"""uvicorn with a drain: what an API process runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("lstm_serve")


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: readiness 503 and new work refused at once, streams closed,
    in-flight requests finished (up to the drain timeout), then uvicorn's own shutdown.
    A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_timeout_s = drain_timeout_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        self._draining = True
        log.info(
            "signal %s: draining for up to %.0fs", signal.Signals(sig).name, self.drain_timeout_s
        )
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_then_exit(sig, frame)))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        await self.app.state.drain.drain(self.drain_timeout_s)
        super().handle_exit(sig, frame)
        # A completed drain is a clean exit (status 0): uvicorn would otherwise re-raise
        # the signal after shutdown and the process would die "killed by SIGTERM".
        getattr(self, "_captured_signals", []).clear()
