"""Waiting a little for a fuller batch, only when requests come in platoons.

The worker starts a step as soon as it is idle and work is queued. Under a closed loop
of many clients on a slow step (64 autocomplete typists, the 2 × 650 model on a CPU),
that splits the clients into platoons: a client's next request arrives just after the
next step began, so it waits a whole step and joins the one after. Steps then hold ~25
rows instead of 64, and a step costs nearly as much for 25 rows as for 64 (it streams the
same weights), so the server does twice the work per answer.

``BatchGather`` lets the worker wait for the rows it just answered to come back (a
closed-loop client sends its next request at once), but only where that pays: after a
step of at least ``min_rows`` rows (a lone request, or a few, never waits), never while
generations are running, and no longer than ``most_s`` nor than ``step_share`` of the
last step (so it costs at most that share of a step, and next to nothing where steps
are fast). It stops as soon as the queue holds the rows that waited at the end of the
last step plus the rows that step answered, or, once some have come, when none has
come for ``lull_s`` (the rest are not coming back soon).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class GatherPolicy:
    most_s: float = 0.0  # longest wait for a fuller batch; 0 = never wait
    lull_s: float = 0.002  # stop once no request has arrived for this long
    step_share: float = 0.5  # never wait longer than this share of the last step
    min_rows: int = 8  # wait only after a step of at least this many rows


class BatchGather:
    """The worker's memory of recent steps and arrivals, and the wait it derives."""

    def __init__(self, policy: GatherPolicy) -> None:
        self.policy = policy
        self.last_rows = 0
        self.last_step_s = 0.0
        self.target = 0  # rows worth waiting for: those queued at the step's end + answered
        self.last_arrival = 0.0

    def arrived(self) -> None:
        """A request was queued (called with the worker's lock held)."""
        self.last_arrival = time.monotonic()

    def stepped(self, rows: int, seconds: float, queued: int, max_rows: int) -> None:
        """A step of ``rows`` rows took ``seconds``; ``queued`` rows were waiting at its end."""
        self.last_rows = rows
        self.last_step_s = seconds
        self.target = min(max_rows, queued + rows)

    def wait(self, cond: threading.Condition, queued: Callable[[], int]) -> float:
        """Wait on ``cond`` (held) while answered rows are still coming back; the seconds
        waited. ``queued()`` counts the rows waiting; 0 when the worker is stopping."""
        policy = self.policy
        if policy.most_s <= 0 or self.last_rows < policy.min_rows:
            return 0.0
        target, self.target = self.target, 0  # one wait per step
        begun = time.monotonic()
        deadline = begun + min(policy.most_s, policy.step_share * self.last_step_s)
        while 0 < queued() < target:
            now = time.monotonic()
            left = deadline - now
            if self.last_arrival > begun:  # some came back: stop at the first lull
                left = min(left, self.last_arrival + policy.lull_s - now)
            if left <= 0:
                break
            cond.wait(left)
        return time.monotonic() - begun
