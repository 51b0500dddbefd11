"""Request deadlines enforced by one periodic sweep, not by a timer per request.

A ``loop.call_later`` per request costs a ``TimerHandle``, a heap push and a cancel: at
tens of thousands of requests per second that was a tenth of the engine's event-loop time
(py-spy of ``bench.micro.fork_bench``). Every request of one kind gets the same timeout, so
deadlines arrive in order; a FIFO queue whose head is checked every ``period_s`` expires
each one at most ``period_s`` late, and a finished request costs nothing but its entry.
Entries of finished requests queued behind one slow request (a frozen session store)
are dropped once there are many, so the queue holds about what is really pending.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

PERIOD_S = 0.05
COMPACT_AT = 4096  # entries; past it a sweep also drops finished ones from the middle


class Deadlines:
    """Calls ``expire`` for each watched future still pending past its deadline."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self._due: deque[tuple[float, asyncio.Future[Any], Callable[[], None]]] = deque()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._compact_at = COMPACT_AT

    def watch(
        self, deadline: float, future: asyncio.Future[Any], expire: Callable[[], None]
    ) -> None:
        """``expire()`` once ``time.monotonic()`` passes ``deadline`` unless ``future`` is
        done by then. Deadlines should not decrease from one call to the next: an earlier
        one queued behind a later one waits for it."""
        self._due.append((deadline, future, expire))
        if self._sweep_handle is None:
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(self.period_s, self._sweep)

    def __len__(self) -> int:
        return len(self._due)

    def _sweep(self) -> None:
        now = time.monotonic()
        due = self._due
        while due:
            deadline, future, expire = due[0]
            if not future.done():
                if deadline > now:
                    break
                expire()
            due.popleft()
        if len(due) > self._compact_at:  # finished entries stuck behind a slow head
            self._due = due = deque(entry for entry in due if not entry[1].done())
            self._compact_at = max(COMPACT_AT, 2 * len(due))
        self._sweep_handle = None
        if due:
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(self.period_s, self._sweep)

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
