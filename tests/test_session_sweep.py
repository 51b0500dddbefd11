"""``service.engine.session_sweep``: the sweeper expires what is idle past its TTL, counts
shared history slots once, and lets the event loop run between pieces."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import torch

from service.engine.history import History
from service.engine.session_sweep import sweep_sessions
from service.engine.sessions import Session, SessionRegistry
from service.engine.state_pool import StatePool


def _registry(sessions: int, ttl_s: float = 60.0) -> SessionRegistry:
    pool = StatePool(1, 4, 8, torch.device("cpu"))
    registry = SessionRegistry(pool, max_sessions=1000, ttl_s=ttl_s)
    for _ in range(sessions):
        registry.create(owner=None)
    return registry


def _history(slots: list[int]) -> History:
    return History([(p, s) for p, s in enumerate(slots)], list(range(len(slots))), 0)


def test_idle_sessions_expire_and_busy_ones_stay() -> None:
    registry = _registry(6, ttl_s=10.0)
    idle, streaming, working, recent, gone, also_idle = list(registry)
    long_ago = time.time() - 60
    for session in (idle, streaming, working, gone, also_idle):
        session.last_used_at = long_ago
    streaming.streaming = True
    working.inflight = 1
    registry.delete(gone)
    expired: list[Session] = []

    async def expire(session: Session) -> bool:
        expired.append(session)
        registry.delete(session)
        return True

    swept = asyncio.run(sweep_sessions(registry, expire, chunk=2))
    assert expired == [idle, also_idle]
    assert swept.expired == 2 and swept.looked_at == 5  # the deleted one is not in it
    assert {s.id for s in registry} == {streaming.id, working.id, recent.id}


def test_a_session_deleted_during_the_pass_is_skipped() -> None:
    registry = _registry(4, ttl_s=10.0)
    sessions = list(registry)
    for session in sessions:
        session.last_used_at = time.time() - 60
    expired: list[Session] = []

    async def expire(session: Session) -> bool:
        await asyncio.sleep(0)
        expired.append(session)
        registry.delete(session)
        registry.delete(sessions[3])  # a client deletes it while the sweeper runs
        return True

    swept = asyncio.run(sweep_sessions(registry, expire, chunk=1))
    assert expired == sessions[:3]
    assert swept.expired == 3 and len(registry) == 0


def test_an_expiry_the_store_defers_keeps_the_session_counted() -> None:
    registry = _registry(2, ttl_s=10.0)
    first, second = list(registry)
    first.last_used_at = time.time() - 60
    first.history = _history([100, 101])
    second.history = _history([102])

    async def not_yet(session: Session) -> bool:
        return False  # a persistent store still lacks its state

    swept = asyncio.run(sweep_sessions(registry, not_yet))
    assert swept.expired == 0
    assert swept.history_slots == 3


def test_history_slots_shared_by_a_fork_count_once() -> None:
    registry = _registry(3)
    source, fork, other = list(registry)
    source.history = _history([100, 101, 102])
    fork.history = _history([100, 101, 102, 103])
    registry.pool.share([100, 101, 102])  # as a fork shares its source's states
    other.history = History([(0, -1)], [5], 0)  # the sentence start needs no slot

    async def never(session: Session) -> bool:
        raise AssertionError("nothing is idle")

    swept = asyncio.run(sweep_sessions(registry, never, chunk=1))
    assert swept.history_slots == 4
    assert swept.looked_at == 3


def test_the_event_loop_runs_between_pieces() -> None:
    registry = _registry(40)

    async def scenario() -> tuple[int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        await sweep_sessions(registry, _keep, chunk=8)
        during = ticks - before
        stop.set()
        await task
        return during, before

    during, _ = asyncio.run(scenario())
    assert during >= 40 // 8  # one turn of the loop per piece of 8 sessions


async def _keep(session: Session) -> bool:
    return False


def test_session_sweep_bench_runs(tmp_path: Path) -> None:
    from bench.micro.session_sweep import main

    rows = main(
        [
            "--sessions",
            "300",
            "--history",
            "4",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "s.json"),
        ]
    )
    assert [row["sessions"] for row in rows] == [300]
    assert set(rows[0]) >= {"before", "one_pass", "pieces", "stall_ratio"}
    assert json.loads((tmp_path / "s.json").read_text()) == rows
