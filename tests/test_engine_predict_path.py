"""The engine server's predict path, answered from the work item's future (no task per
request): results, timeouts, cancels and overload through the real channel, and nothing
left behind (no pending entry, no state slot)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from service.engine.errors import Overloaded, Timeout
from tests.engine_harness import LocalEngine, run_engine


async def _nothing_left(engine: LocalEngine) -> tuple[int, int]:
    """(predicts the server still tracks, state slots in use), once the worker is idle:
    items that timed out or were cancelled are dropped when it next looks at its queue,
    after the step that held them back (up to 20 s on a loaded machine)."""
    for _ in range(400):
        if not engine.worker.queue_depth() and not engine.runner.pool.in_use:
            break
        await asyncio.sleep(0.05)
    return len(engine.server._predicts), engine.runner.pool.in_use


def test_predicts_are_answered_and_leave_nothing_behind(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], Any, tuple[int, int]]:
        texts = ["the market fell", "it 's", "the bank said", "the"]
        answers = await asyncio.gather(*(engine.predict(t, k=3) for t in texts))
        alone = await engine.predict("the market fell", k=3)
        return answers, alone, await _nothing_left(engine)

    answers, alone, left = run_engine(tiny_checkpoint, scenario)
    assert [len(a.predictions) for a in answers] == [3, 3, 3, 3]
    assert [p.word for p in answers[0].predictions] == [p.word for p in alone.predictions]
    assert left == (0, 0)


@contextlib.contextmanager
def _worker_held(engine: LocalEngine) -> Iterator[None]:
    """The inference thread cannot start a step while this is held: its condition's lock
    is reentrant, so the event loop (this thread) still queues and cancels items."""
    lock = engine.worker._cond
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the engine never got there")


def test_a_predict_past_its_deadline_times_out(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], tuple[int, int]]:
        with _worker_held(engine):
            calls = [asyncio.ensure_future(engine.predict("the", k=3)) for _ in range(4)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        return results, await _nothing_left(engine)

    results, left = run_engine(tiny_checkpoint, scenario, request_timeout_s=0.2)
    assert len(results) == 4
    assert all(isinstance(r, Timeout) and r.code == "timeout" for r in results)
    assert left == (0, 0)


def test_cancelled_predicts_are_dropped_and_the_engine_goes_on(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[int, Any, tuple[int, int], int]:
        server = engine.server
        with _worker_held(engine):
            queued = [asyncio.ensure_future(engine.predict("the", k=3)) for _ in range(5)]
            await _until(lambda: len(server._predicts) == 5)  # all queued in the engine
            steps = engine.worker.steps
            for call in queued:
                call.cancel()  # the client sends Cancel for each
            results = await asyncio.gather(*queued, return_exceptions=True)
            await _until(lambda: all(item.cancelled for item in server._predicts.values()))
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        after = await engine.predict("the", k=3)
        return cancelled, after, await _nothing_left(engine), engine.worker.steps - steps

    cancelled, after, left, steps = run_engine(tiny_checkpoint, scenario)
    assert cancelled == 5
    assert len(after.predictions) == 3
    assert steps == 1  # only the last predict ran: the five cancelled never did
    assert left == (0, 0)


def test_overload_is_answered_at_once(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], tuple[int, int]]:
        with _worker_held(engine):
            calls = [asyncio.ensure_future(engine.predict("the", k=3)) for _ in range(12)]
            done, _ = await asyncio.wait(calls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            assert done  # the overloaded ones are answered while the worker is held
            await _until(lambda: sum(c.done() for c in calls) == 10)
        results = await asyncio.gather(*calls, return_exceptions=True)
        return results, await _nothing_left(engine)

    results, left = run_engine(tiny_checkpoint, scenario, max_queue=2)
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert len(overloaded) == 10 and all(r.code == "overloaded" for r in overloaded)
    assert sum(not isinstance(r, Exception) for r in results) == 2  # the queued two
    assert left == (0, 0)
