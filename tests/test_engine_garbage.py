"""Served requests leave no reference cycles behind: everything a feed, a predict or a
score allocates is freed by reference counting when it is answered.

A cycle per request (a work item's ``on_finish`` closure held the item) left ~18 objects
per feed to the garbage collector, whose young-generation passes then freed ~50,000 at a
time: 40-115 ms in which the engine answered nothing (BENCHMARKS §0.5)."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from pathlib import Path

from tests.engine_harness import LocalEngine as Engine
from tests.engine_harness import run_engine

WORDS = ["the", "company", "said", "it 's", "N", "shares\n", "fell", "sharply"]


def test_requests_leave_no_reference_cycles(tiny_checkpoint: Path) -> None:
    async def scenario(engine: Engine) -> Counter[str]:
        sessions = [(await engine.create_session()).session_id for _ in range(8)]

        async def traffic(rounds: int) -> None:
            for r in range(rounds):
                await asyncio.gather(
                    *(engine.feed(s, WORDS[(r + i) % len(WORDS)]) for i, s in enumerate(sessions)),
                    *(engine.predict(" ".join(WORDS[: 2 + i])) for i in range(4)),
                    engine.score("the company said it expects"),
                )

        await traffic(3)  # warm-up: caches and pools made once are not garbage
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await traffic(20)  # 160 feeds, 80 predicts, 20 scores
            gc.collect()
            return Counter(type(o).__qualname__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    garbage = run_engine(tiny_checkpoint, scenario)
    assert sum(garbage.values()) < 40, garbage.most_common(10)  # 4,280 with the cycle
