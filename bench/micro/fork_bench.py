"""Forks/s and rewinds/s in the engine alone (no channel, no HTTP).

python -m bench.micro.fork_bench models/default 32 [ROUNDS] [SWITCH_INTERVAL_MS]

64 sources with 40 fed words each (so a full rewind history of HISTORY states); then
ROUNDS (default 100) times, one fork of every source at once, measured after one
unmeasured warm-up round (the pool grows to hold the forks once, not in the figure).
Runs under the server's GIL switch interval (0.1 ms, ``service.cpu_sharing``) unless
told otherwise, and with its garbage-collector thresholds. Per fork: wall time, CPU of
the whole process and of its event-loop and inference threads, and the time spent in
``runner.step``. A fork without predictions copies on the event loop
(``StatePool.copy_now``), so "0 model steps" is the expected count there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

from service.cpu_sharing import tune_garbage_collector
from service.engine.core import Engine, EngineConfig

SOURCES = 64
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def worker_cpu_s() -> float:
    """CPU seconds of the inference thread so far (from /proc: it is not this thread)."""
    thread = next(t for t in threading.enumerate() if t.name == "inference")
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


async def fork_rounds(engine: Engine, sources: list, rounds: int, spent: list[float]) -> str:
    """Fork every source ``rounds`` times (a round: all sources at once); remove them."""
    ops, states = engine.ops(), engine.states()
    assert engine.worker is not None
    spent[0] = 0.0
    cpu0, started, steps0 = time.process_time(), time.perf_counter(), engine.worker.steps
    loop0, worker0 = time.thread_time(), worker_cpu_s()
    forks = []
    for _ in range(rounds):
        forks += await asyncio.gather(*(states.fork(s.session_id, None, 0) for s in sources))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    loop, worker = time.thread_time() - loop0, worker_cpu_s() - worker0
    steps = engine.worker.steps - steps0
    for f in forks:
        await ops.remove(f.session_id, None)
    n = len(forks)
    return (
        f"{n} forks in {elapsed:.2f}s = {n / elapsed:,.0f} forks/s, {steps} model steps, "
        f"{cpu / n * 1e6:.0f} us CPU/fork (event loop {loop / n * 1e6:.0f}, inference "
        f"thread {worker / n * 1e6:.0f}), {spent[0] / n * 1e6:.0f} us in runner.step/fork"
    )


async def main(model: str, history: int, rounds: int, switch_interval_ms: float) -> None:
    sys.setswitchinterval(switch_interval_ms / 1000)
    tune_garbage_collector()  # as the engine process does
    engine = Engine(
        EngineConfig(
            Path(model), device="cpu", threads=1, session_history=history, max_sessions=1_000_000
        )
    )
    await engine.start()
    ops, states = engine.ops(), engine.states()
    spent = [0.0]
    assert engine.runner is not None
    real_step = engine.runner.step

    def timed(rows):
        t = time.perf_counter()
        try:
            return real_step(rows)
        finally:
            spent[0] += time.perf_counter() - t

    engine.runner.step = timed  # type: ignore[method-assign]
    sources = [await ops.create([1, 2, 3], 0, None) for _ in range(SOURCES)]
    for s in sources:
        for w in range(40):
            await ops.feed(s.session_id, [w + 5], 0, None)
    label = f"history={history} switch={switch_interval_ms:g}ms"
    warm_up = await fork_rounds(engine, sources, rounds, spent)
    print(f"{label}: warm-up, the pool grows (not the figure): {warm_up}", flush=True)
    for _ in range(2):
        print(f"{label}: {await fork_rounds(engine, sources, rounds, spent)}", flush=True)
    started = time.perf_counter()
    n = 0
    for _ in range(20):
        await asyncio.gather(*(states.rewind(s.session_id, None, 1, 0) for s in sources))
        await asyncio.gather(*(ops.feed(s.session_id, [7], 0, None) for s in sources))
        n += len(sources)
    elapsed = time.perf_counter() - started
    print(f"{label}: rewind+feed pairs {n} in {elapsed:.2f}s = {n / elapsed:,.0f}/s")
    print("bytes per slot", engine.runner.pool.bytes_per_slot)
    await engine.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]),
            int(sys.argv[3]) if len(sys.argv) > 3 else 100,
            float(sys.argv[4]) if len(sys.argv) > 4 else 0.1,
        )
    )
