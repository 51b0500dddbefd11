"""Waiting for a fuller batch (``service/engine/gather.py``): only after many-row steps.

These run a real engine (tiny checkpoint, real channel) and read its step counts and its
``lstm_serve_batch_size`` histogram. The policy's time limits are set far above the tiny
model's step time so that the assertions depend on what arrives, not on how fast.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from service.engine.gather import GatherPolicy
from tests.engine_harness import LocalEngine, run_engine

pytestmark = pytest.mark.integration

PATIENT = GatherPolicy(most_s=2.0, lull_s=0.5, step_share=10_000.0, min_rows=8)
NEVER = GatherPolicy(most_s=0.0)


def _sample(engine: LocalEngine, name: str, labels: dict[str, str] | None = None) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


def _steps_over(engine: LocalEngine, rows: int) -> float:
    """Model steps so far with more than ``rows`` rows (``rows`` must be a bucket bound)."""
    total = 0.0
    for kind in ("decode", "prefill"):
        every = _sample(engine, "lstm_serve_batch_size_count", {"kind": kind})
        small = _sample(
            engine, "lstm_serve_batch_size_bucket", {"kind": kind, "le": str(float(rows))}
        )
        total += every - small
    return total


async def _burst(engine: LocalEngine, count: int, tag: str) -> None:
    await asyncio.gather(*(engine.predict(f"the {tag} market {i}", k=3) for i in range(count)))


def test_a_lone_client_never_waits(tiny_checkpoint: Path) -> None:
    async def scenario(engine: LocalEngine) -> tuple[float, int]:
        for text in ["the", "the market", "the market fell", "the market fell again"] * 3:
            await engine.predict(text, k=3)
        return _sample(engine, "lstm_serve_batch_gather_seconds_total"), engine.worker.steps

    waited, steps = run_engine(tiny_checkpoint, scenario, gather=PATIENT)
    assert waited == 0.0
    assert steps >= 12  # each request its own step, at once


def _two_groups(policy: GatherPolicy, tiny_checkpoint: Path) -> tuple[float, float]:
    """After a step of more than 8 rows, 8 requests, then 8 more 0.1 s later: the steps of
    more than 8 rows those 16 made, and the seconds the worker waited in all."""

    async def scenario(engine: LocalEngine) -> tuple[float, float]:
        for attempt in range(10):  # the first of a burst may still be stepped alone
            await _burst(engine, 24, f"warm{attempt}")
            if engine.worker.gather.last_rows > 8:
                break
        assert engine.worker.gather.last_rows > 8, "no step of more than 8 rows to follow"
        before = _steps_over(engine, 8)
        first = asyncio.ensure_future(_burst(engine, 8, "first"))
        await asyncio.sleep(0.1)
        await asyncio.gather(first, _burst(engine, 8, "second"))
        waited = _sample(engine, "lstm_serve_batch_gather_seconds_total")
        return _steps_over(engine, 8) - before, waited

    result: Any = run_engine(tiny_checkpoint, scenario, gather=policy)
    return result


def test_the_clients_a_big_step_answered_are_waited_for(tiny_checkpoint: Path) -> None:
    merged, waited = _two_groups(PATIENT, tiny_checkpoint)
    assert merged >= 1  # the two groups of 8 shared a step
    assert waited > 0.05  # the worker held the first group for the second


def test_without_gathering_the_groups_run_apart(tiny_checkpoint: Path) -> None:
    merged, waited = _two_groups(NEVER, tiny_checkpoint)
    assert merged == 0
    assert waited == 0.0


def test_the_wait_is_bounded_by_a_share_of_the_last_step(tiny_checkpoint: Path) -> None:
    """With the tiny model's sub-millisecond steps, half a step is no wait worth having:
    the default share keeps the groups apart even with a long ``most_s``."""
    merged, waited = _two_groups(GatherPolicy(most_s=2.0, lull_s=0.5), tiny_checkpoint)
    assert merged == 0
    assert waited < 0.05
