"""The engine server's predict path, answered from the work item's future (no task per
request): results, timeouts, cancels and overload through the real channel, and nothing
left behind (no pending entry, no state slot)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from service.engine.errors import Overloaded, Timeout
from tests.engine_harness import LocalEngine, run_engine

LONG_TEXT = " ".join(["the market"] * 20000)  # one step of it takes a while on a CPU


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


def test_a_predict_past_its_deadline_times_out(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], tuple[int, int]]:
        long = asyncio.ensure_future(engine.score(LONG_TEXT))
        await asyncio.sleep(0.01)  # the long score holds the only row of the next step
        results = await asyncio.gather(
            *(engine.predict("the market", k=3) for _ in range(4)), return_exceptions=True
        )
        await asyncio.gather(long, return_exceptions=True)
        return results, await _nothing_left(engine)

    results, left = run_engine(tiny_checkpoint, scenario, request_timeout_s=0.05, max_batch_size=1)
    timeouts = [r for r in results if isinstance(r, Timeout)]
    assert timeouts and all(r.code == "timeout" for r in timeouts)
    assert left == (0, 0)


def test_cancelled_predicts_are_dropped_and_the_engine_goes_on(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[int, Any, tuple[int, int], int]:
        long = asyncio.ensure_future(engine.score(LONG_TEXT))
        await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(engine.predict("the", k=3)) for _ in range(5)]
        await asyncio.sleep(0.05)  # sent and queued behind the long score
        for call in queued:
            call.cancel()  # the client sends Cancel for each
        cancelled = sum(
            isinstance(r, asyncio.CancelledError)
            for r in await asyncio.gather(*queued, return_exceptions=True)
        )
        await long
        steps = engine.worker.steps
        after = await engine.predict("the", k=3)
        return cancelled, after, await _nothing_left(engine), engine.worker.steps - steps

    cancelled, after, left, steps = run_engine(tiny_checkpoint, scenario, max_batch_size=1)
    assert cancelled == 5
    assert steps <= 2  # the cancelled five never ran (6 steps if they had)
    assert len(after.predictions) == 3
    assert left == (0, 0)


def test_overload_is_answered_at_once(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], tuple[int, int]]:
        results = await asyncio.gather(
            *(engine.predict(LONG_TEXT, k=3) for _ in range(12)), return_exceptions=True
        )
        return results, await _nothing_left(engine)

    results, left = run_engine(tiny_checkpoint, scenario, max_queue=2, max_batch_size=1)
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert overloaded and all(r.code == "overloaded" for r in overloaded)
    assert all(not isinstance(r, Exception) or isinstance(r, Overloaded) for r in results)
    assert left == (0, 0)
