"""Bytes per session with rewind history 0 and 32, with or without a continuous cache
(default model, single-word feeds).

python -m bench.micro.session_bytes HISTORY SESSIONS FEEDS [cache]   (e.g. 32 500 40 cache)
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from service.engine.core import Engine, EngineConfig


async def main(history: int, sessions: int, words: int, cached: bool) -> None:
    sys.setswitchinterval(0.0001)
    engine = Engine(
        EngineConfig(
            Path("models/default"),
            device="cpu",
            threads=1,
            session_history=history,
            max_sessions=1_000_000,
            initial_pool_slots=1024,
            state_key="x",
        )
    )
    await engine.start()
    ops, pool = engine.ops(), engine.runner.pool
    gc.collect()
    tracemalloc.start()
    slots0 = pool.in_use
    ids = [(await ops.create([1], 0, None, cached)).session_id for _ in range(sessions)]
    started = time.perf_counter()
    for w in range(words):
        await asyncio.gather(*(ops.feed(s, [w + 5], 0, None) for s in ids))
    feeds_s = sessions * words / (time.perf_counter() - started)
    gc.collect()
    python_bytes = tracemalloc.get_traced_memory()[0]
    slots = pool.in_use - slots0
    caches = engine.runner.caches
    state = slots * pool.bytes_per_slot + (caches.bytes_in_use if caches and cached else 0)
    print(
        f"history={history}{' + cache' if cached else ''}: {sessions} sessions x {words} "
        "single-word feeds "
        f"({feeds_s:,.0f} feeds/s): {slots / sessions:.1f} slots/session = "
        f"{state / sessions:,.0f} B state + {python_bytes / sessions:,.0f} B Python = "
        f"{(state + python_bytes) / sessions:,.0f} B/session; "
        f"x100k = {(state + python_bytes) * 100_000 / sessions / 1e9:.2f} GB"
    )
    await engine.stop()


if __name__ == "__main__":
    cached = len(sys.argv) > 4 and sys.argv[4] == "cache"
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), cached))
