"""``service.engine.deadlines``: one sweep expires what is late, and only that."""

from __future__ import annotations

import asyncio
import time

from service.engine.deadlines import COMPACT_AT, Deadlines


def test_sweep_expires_late_futures_only() -> None:
    async def scenario() -> tuple[list[str], int, bool]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(period_s=0.01)
        expired: list[str] = []
        now = time.monotonic()
        done, late, later = (loop.create_future() for _ in range(3))
        deadlines.watch(now + 0.02, done, lambda: expired.append("done"))
        deadlines.watch(now + 0.03, late, lambda: expired.append("late"))
        deadlines.watch(now + 10.0, later, lambda: expired.append("later"))
        done.set_result(None)
        await asyncio.sleep(0.2)
        waiting = len(deadlines)
        later.set_result(None)
        await asyncio.sleep(0.05)
        idle = deadlines._sweep_handle is None
        deadlines.close()
        return expired, waiting, idle

    expired, waiting, idle = asyncio.run(scenario())
    assert expired == ["late"]  # the finished one is skipped, the far one not yet due
    assert waiting == 1
    assert idle  # nothing left to watch: no timer runs


def test_finished_entries_behind_a_slow_head_are_dropped() -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(period_s=0.01)
        now = time.monotonic()
        slow = loop.create_future()
        deadlines.watch(now + 60, slow, lambda: None)
        for _ in range(COMPACT_AT + 10):
            finished = loop.create_future()
            finished.set_result(None)
            deadlines.watch(now + 60, finished, lambda: None)
        before = len(deadlines)
        await asyncio.sleep(0.05)
        after = len(deadlines)
        slow.set_result(None)
        deadlines.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert before == COMPACT_AT + 11
    assert after == 1  # only the slow, still pending one
