"""Forks that copy on the event loop (``StatePool.copy_now``) and the slot quarantine that
keeps those copies out of the way of queued work (``StatePool.allocate_settled``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from service.engine.core import Engine, EngineConfig
from service.engine.results import Step
from service.engine.state_pool import StatePool

TOL = 1e-5
TEXT = [5, 17, 42, 9]


def _run(checkpoint: Path, scenario: Callable[[Engine], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        engine = Engine(EngineConfig(checkpoint, device="cpu", session_history=8))
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


def _same_top(a: Step, b: Step) -> None:
    assert [i for i, _ in a.top] == [i for i, _ in b.top]
    assert all(abs(x - y) <= TOL for (_, x), (_, y) in zip(a.top, b.top, strict=True))


def test_pool_quarantine_and_copy_now() -> None:
    with torch.inference_mode():
        pool = StatePool(2, 3, 4, torch.device("cpu"))
    submitted, settled = [0], [1]
    pool.submitted = lambda: submitted[0]
    pool.settled_below = lambda: settled[0]
    a, b = pool.allocate(), pool.allocate()
    with torch.inference_mode():
        pool.h[:, a] = 1.5
        pool.c[:, a] = -2.0
    pool.log_norm[a] = 3.25
    pool.copy_now(a, b)
    assert torch.equal(pool.h[:, b], pool.h[:, a]) and torch.equal(pool.c[:, b], pool.c[:, a])
    assert pool.log_norm[b] == 3.25
    submitted[0], settled[0] = 7, 5  # items 5..7 are queued when ``a`` is released
    pool.release(a)
    settled_slots = [pool.allocate_settled(), pool.allocate_settled()]
    assert a not in settled_slots and None not in settled_slots  # the two never-used slots
    assert pool.allocate_settled() is None  # only ``a`` is free, and it is not settled
    settled[0] = 8  # every item that could name ``a`` has had its step
    assert pool.allocate_settled() == a
    pool.release(a)
    assert pool.allocate() == a  # plain allocations take quarantined slots first
    assert pool.in_use == 4
    pool.release(b)
    grown = pool.allocate()  # ``b`` in quarantine goes first
    assert grown == b
    beyond = pool.allocate()  # reserved past the tensors' capacity
    assert beyond >= pool.capacity
    pool.release(beyond)
    settled[0] = 100
    assert pool.allocate_settled() is None  # the tensors do not hold that slot yet


def test_fork_without_predictions_takes_no_model_step(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> None:
        ops, states = engine.ops(), engine.states()
        assert engine.worker is not None
        source = await ops.create(TEXT, 0, None)
        steps = engine.worker.steps
        forks = await asyncio.gather(*(states.fork(source.session_id, None, 0) for _ in range(8)))
        assert engine.worker.steps == steps  # copies only, on the event loop
        assert len({f.session_id for f in forks}) == 8 and all(f.position == 4 for f in forks)
        fresh = await ops.create([*TEXT, 11], 10, None)
        for fork in forks:
            _same_top(await ops.feed(fork.session_id, [11], 10, None), fresh)
        grandchild = await states.fork(forks[0].session_id, None, 0)
        _same_top(
            await states.rewind(grandchild.session_id, None, 1, 10),
            await ops.create(TEXT, 10, None),
        )
        assert engine.metrics.session_state_ops.labels("fork")._value.get() == 9

    _run(tiny_checkpoint, scenario)


def test_event_loop_fork_never_reuses_a_slot_queued_work_still_reads(
    tiny_checkpoint: Path,
) -> None:
    """A fork with predictions is queued; its source is deleted before the step; a fork
    without predictions must not copy into the freed source slot the queued one reads."""

    async def scenario(engine: Engine) -> tuple[Step, Step, int, int]:
        ops, states, worker = engine.ops(), engine.states(), engine.worker
        assert worker is not None
        source = await ops.create(TEXT, 0, None)
        other = await ops.create([7, 7, 7], 0, None)
        source_slot = engine.sessions.find(source.session_id).slot  # type: ignore[union-attr]
        with worker._cond:  # reentrant here; the worker cannot take work meanwhile
            queued = asyncio.create_task(states.fork(source.session_id, None, 5))
            for _ in range(20):
                await asyncio.sleep(0)
                if worker.queue_depth():
                    break
            assert worker.queue_depth() == 1
            await ops.remove(source.session_id, None)
            quick = await states.fork(other.session_id, None, 0)
            quick_slot = engine.sessions.find(quick.session_id).slot  # type: ignore[union-attr]
        forked = await queued
        return forked, await ops.create(TEXT, 5, None), source_slot, quick_slot

    forked, fresh, source_slot, quick_slot = _run(tiny_checkpoint, scenario)
    assert quick_slot != source_slot
    _same_top(forked, fresh)


@pytest.mark.parametrize("queued", [0, 3])
def test_settled_below_follows_the_queue(tiny_checkpoint: Path, queued: int) -> None:
    async def scenario(engine: Engine) -> tuple[int, int, int]:
        ops, worker = engine.ops(), engine.worker
        assert worker is not None
        with worker._cond:
            tasks = [asyncio.create_task(ops.create(TEXT, 0, None)) for _ in range(queued)]
            for _ in range(20):
                await asyncio.sleep(0)
            first = worker._queue[0].seq if queued else worker.submitted + 1
            during = worker.settled_below()
        await asyncio.gather(*tasks)
        return first, during, worker.settled_below() - worker.submitted

    first, during, after = _run(tiny_checkpoint, scenario)
    assert during == first
    assert after == 1
