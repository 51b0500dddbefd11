"""Shed work when the event loop itself is the bottleneck.

The inference queue's limit (``LSTM_SERVE_MAX_QUEUE``) only sees requests the event loop
has already read. When the loop is the saturated part (HTTP and JSON cost more CPU than
the model, as on a small CPU box), requests wait in the kernel's socket buffers instead,
where no queue can count them: the inner queue stays short, nobody gets a 429, and
latency grows with the number of connections. How late the loop runs a periodic timer
measures exactly that wait. While every one of the last few samples is past
``LSTM_SERVE_SHED_LOOP_LAG_MS`` (a standing backlog, not one slow iteration or a garbage
collection: CoDel's rule), the middleware answers new work requests with an immediate 429
(``overloaded``), which costs the loop a small fraction of serving them, until a sample
falls below it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from prometheus_client import Gauge, Histogram


class LoopLag:
    """Samples the event loop's lag every ``period_s``; ``lagging`` past the threshold."""

    def __init__(
        self,
        threshold_s: float,
        gauge: Gauge,
        histogram: Histogram,
        period_s: float = 0.01,
        window: int = 3,
    ) -> None:
        self.threshold_s = threshold_s  # 0: never shed
        self.period_s = period_s
        self.gauge = gauge
        self.histogram = histogram
        self.last_s = 0.0
        self._recent: deque[float] = deque([0.0] * window, maxlen=window)
        self._task: asyncio.Task[None] | None = None

    @property
    def lagging(self) -> bool:
        """Every recent sample past the threshold."""
        return self.threshold_s > 0 and min(self._recent) > self.threshold_s

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.observe(time.perf_counter() - started - self.period_s)

    def observe(self, lag_s: float) -> None:
        self.last_s = max(0.0, lag_s)
        self._recent.append(self.last_s)
        self.gauge.set(self.last_s)
        self.histogram.observe(self.last_s)
