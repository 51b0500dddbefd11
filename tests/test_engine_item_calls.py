"""The engine server's hot paths, predicts and feeds of sessions held here, answered from
the work item's future (no task per request, ``service.engine.item_calls``): results,
timeouts, cancels and overload through the real channel, and nothing left behind (no
pending entry, no state slot, no busy session)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.engine.errors import Overloaded, SessionNotFound, Timeout
from tests.engine_harness import LocalEngine, run_engine


async def _nothing_left(engine: LocalEngine) -> tuple[int, int]:
    """(predicts the server still tracks, state slots in use), once the worker is idle:
    items that timed out or were cancelled are dropped when it next looks at its queue,
    after the step that held them back (up to 20 s on a loaded machine)."""
    for _ in range(400):
        if not engine.worker.queue_depth() and not engine.runner.pool.in_use:
            break
        await asyncio.sleep(0.05)
    return len(engine.server._items.waiting), engine.runner.pool.in_use


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
            await _until(lambda: len(server._items.waiting) == 5)  # all queued in the engine
            steps = engine.worker.steps
            for call in queued:
                call.cancel()  # the client sends Cancel for each
            results = await asyncio.gather(*queued, return_exceptions=True)
            await _until(lambda: all(item.cancelled for item in server._items.waiting.values()))
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


# ---- feeds of sessions held here -----------------------------------------------------
WORDS = "the company said it expects sales".split()


def _count_tasks(engine: LocalEngine) -> list[str]:
    """Record the requests the engine server gives a task (the long way) from now on."""
    server, started = engine.server, []
    start_task = server._start_task

    def counted(identity: bytes, request: Any) -> None:
        started.append(type(request).__name__)
        start_task(identity, request)

    server._start_task = counted  # type: ignore[method-assign]
    return started


def test_feeds_take_no_task_and_equal_the_coroutine_path(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], list[Any], list[str], Any]:
        ops = engine.core.ops()
        reference = (await engine.create_session("")).session_id
        session = (await engine.create_session("")).session_id
        tasks = _count_tasks(engine)
        fast = [await engine.feed(session, word, k=3) for word in WORDS]
        slow = []  # SessionOps.feed: the coroutine a task runs, in this process
        for word in WORDS:
            ids = engine.client.encode(word)[1]
            slow.append(await ops.feed(reference, ids, 3, None))
        inflight = engine.core.sessions.find(session).inflight
        return fast, slow, tasks, inflight

    fast, slow, tasks, inflight = run_engine(tiny_checkpoint, scenario)
    assert tasks == []  # every feed was answered from its item
    assert [s.position for s in fast] == [s.position for s in slow] == list(range(1, 7))
    for a, b in zip(fast, slow, strict=True):
        assert abs(a.logprob - b.logprob) < 1e-5
        assert [p.logprob for p in a.predictions] == pytest.approx([lp for _, lp in b.top])
    assert inflight == 0


def test_feeds_that_time_out_or_are_cancelled_change_nothing(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], list[Any], list[int], int]:
        server = engine.server
        session = (await engine.create_session("the")).session_id
        before = engine.runner.pool.in_use
        with _worker_held(engine):
            late = [asyncio.ensure_future(engine.feed(session, w)) for w in WORDS[:3]]
            timed_out = await asyncio.gather(*late, return_exceptions=True)
        with _worker_held(engine):
            queued = [asyncio.ensure_future(engine.feed(session, w)) for w in WORDS[:4]]
            await _until(lambda: len(server._items.waiting) == 4)
            for call in queued:
                call.cancel()
            cancelled = await asyncio.gather(*queued, return_exceptions=True)
            await _until(lambda: all(i.cancelled for i in server._items.waiting.values()))
        await _nothing_left_but(engine, before)
        positions = [(await engine.describe_session(session)).position]
        positions.append((await engine.feed(session, "company")).position)
        return timed_out, cancelled, positions, engine.runner.pool.in_use - before

    timed_out, cancelled, positions, slots = run_engine(
        tiny_checkpoint, scenario, request_timeout_s=0.3
    )
    assert all(isinstance(r, Timeout) for r in timed_out)
    assert all(isinstance(r, asyncio.CancelledError) for r in cancelled)
    assert positions == [1, 2]  # none of the seven was applied
    assert slots == 1  # the one feed that ran keeps its rewind state, nothing else


async def _nothing_left_but(engine: LocalEngine, slots: int) -> None:
    for _ in range(400):
        idle = not engine.worker.queue_depth() and engine.runner.pool.in_use == slots
        if idle and not engine.server._items.waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("feeds left something behind")


def test_feeds_past_a_full_queue_are_overloaded_at_once(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[list[Any], list[int]]:
        sessions = [(await engine.create_session("")).session_id for _ in range(6)]
        with _worker_held(engine):
            calls = [asyncio.ensure_future(engine.feed(s, "the")) for s in sessions]
            await _until(lambda: sum(c.done() for c in calls) == 4)
        results = await asyncio.gather(*calls, return_exceptions=True)
        positions = [(await engine.describe_session(s)).position for s in sessions]
        return results, positions

    results, positions = run_engine(tiny_checkpoint, scenario, max_queue=2)
    overloaded = [i for i, r in enumerate(results) if isinstance(r, Overloaded)]
    assert len(overloaded) == 4
    assert [p for i, p in enumerate(positions) if i in overloaded] == [0, 0, 0, 0]
    assert sorted(p for i, p in enumerate(positions) if i not in overloaded) == [1, 1]


def test_feeds_of_unknown_or_foreign_sessions_are_refused(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> list[Any]:
        session = (await engine.create_session("", owner="alice")).session_id
        tasks = _count_tasks(engine)
        calls = [engine.feed(session, "the", owner="bob"), engine.feed("nope", "the")]
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [*results, tasks]

    foreign, unknown, tasks = run_engine(tiny_checkpoint, scenario)
    assert isinstance(foreign, SessionNotFound) and isinstance(unknown, SessionNotFound)
    assert tasks == ["Feed"]  # the unknown id goes the long way: it may be in the store
