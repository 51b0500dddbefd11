"""Forks/s and rewinds/s in the engine alone (no channel, no HTTP).

python -m bench.micro.fork_bench models/default 32 [ROUNDS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from service.engine.core import Engine, EngineConfig


async def main(model: str, history: int) -> None:
    sys.setswitchinterval(0.0001)
    engine = Engine(
        EngineConfig(
            Path(model), device="cpu", threads=1, session_history=history, max_sessions=1_000_000
        )
    )
    await engine.start()
    ops, states = engine.ops(), engine.states()
    spent = [0.0]
    real_step = engine.runner.step

    def timed(rows):
        t = time.perf_counter()
        try:
            return real_step(rows)
        finally:
            spent[0] += time.perf_counter() - t

    engine.runner.step = timed
    sources = [await ops.create([1, 2, 3], 0, None) for _ in range(64)]
    for s in sources:
        for w in range(40):
            await ops.feed(s.session_id, [w + 5], 0, None)
    for rounds in (int(sys.argv[3]) if len(sys.argv) > 3 else 20, 100):
        cpu0 = time.process_time()
        started = time.perf_counter()
        steps0 = engine.worker.steps
        forks = []
        for _ in range(rounds):
            forks += await asyncio.gather(*(states.fork(s.session_id, None, 0) for s in sources))
        elapsed = time.perf_counter() - started
        print(
            f"history={history}: {len(forks)} forks in {elapsed:.2f}s = "
            f"{len(forks) / elapsed:,.0f} forks/s, {engine.worker.steps - steps0} steps, "
            f"{(time.process_time() - cpu0) / len(forks) * 1e6:.0f} us CPU/fork, "
            f"{spent[0] / len(forks) * 1e6:.0f} us in runner.step/fork"
        )
        spent[0] = 0.0
        for f in forks:
            await ops.remove(f.session_id, None)
    started = time.perf_counter()
    n = 0
    for _ in range(20):
        await asyncio.gather(*(states.rewind(s.session_id, None, 1, 0) for s in sources))
        await asyncio.gather(*(ops.feed(s.session_id, [7], 0, None) for s in sources))
        n += len(sources)
    elapsed = time.perf_counter() - started
    print(f"history={history}: rewind+feed pairs {n} in {elapsed:.2f}s = {n / elapsed:,.0f}/s")
    print("bytes per slot", engine.runner.pool.bytes_per_slot)
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
