"""The autocomplete trace against the Engine object alone (no HTTP, no ZeroMQ): the
engine's share of ``bench.http.autocomplete``, prefix cache off and on, same run.

    python -m bench.micro.autocomplete_engine [--sentences 300] [--clients 64]

Each of ``--clients`` tasks takes the next PTB-valid sentence and predicts after each of
its growing prefixes, in order (the ids of the prefix, as the API would send them). Runs
under the server's GIL switch interval (0.1 ms) and one torch thread, like the engine
process on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

from models.checkpoint import load
from service.cpu_sharing import tune_garbage_collector
from service.engine.core import Engine, EngineConfig

TICKS_PER_S = os.sysconf("SC_CLK_TCK")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "ptb" / "ptb.valid.txt"


def inference_cpu_s() -> float:
    """CPU seconds of the inference thread so far (from /proc: it is not this thread)."""
    thread = next(t for t in threading.enumerate() if t.name == "inference")
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def sentences(path: Path, count: int) -> list[list[str]]:
    out = [line.split() for line in path.read_text().splitlines() if line.split()]
    return out[:count]


async def run(engine: Engine, trace: list[list[int]], clients: int) -> dict[str, float]:
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for ids in trace:
        queue.put_nowait(ids)
    latencies: list[float] = []

    async def typist() -> None:
        while not queue.empty():
            ids = queue.get_nowait()
            for n in range(1, len(ids) + 1):
                started = time.perf_counter()
                await engine.predict(ids[:n], 5)
                latencies.append(time.perf_counter() - started)

    assert engine.worker is not None
    steps0, cpu0, started = engine.worker.steps, time.process_time(), time.perf_counter()
    loop0, inference0 = time.thread_time(), inference_cpu_s()
    await asyncio.gather(*(typist() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    steps = engine.worker.steps - steps0
    loop, inference = time.thread_time() - loop0, inference_cpu_s() - inference0
    latencies.sort()
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "cpu": round((time.process_time() - cpu0) / elapsed, 3),
        "cpu_us_per_request": round(1e6 * (time.process_time() - cpu0) / len(latencies), 1),
        "loop_us_per_request": round(1e6 * loop / len(latencies), 1),
        "inference_us_per_request": round(1e6 * inference / len(latencies), 1),
        "rows_per_step": round(len(latencies) / max(1, steps), 1),
    }


async def one(model: Path, cache_bytes: int, trace: list[list[int]], clients: int) -> dict:
    config = EngineConfig(model, device="cpu", threads=1, prefix_cache_bytes=cache_bytes)
    engine = Engine(config)
    await engine.start()
    try:
        await run(engine, trace[-clients:], clients)  # warm-up (not among the measured)
        return await run(engine, trace[:-clients], clients)
    finally:
        await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--cache-bytes", type=int, default=256 << 20)
    parser.add_argument("--switch-interval-ms", type=float, default=0.1)
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_interval_ms / 1000)
    tune_garbage_collector()  # as the engine process does
    words = sentences(args.text, args.sentences + args.clients)
    vocabulary = load(args.model, "cpu").vocabulary
    trace = [vocabulary.encode(w) for w in words]
    off = asyncio.run(one(args.model, 0, trace, args.clients))
    on = asyncio.run(one(args.model, args.cache_bytes, trace, args.clients))
    speedup = round(on["req_per_s"] / off["req_per_s"], 2)
    report = {"cache_off": off, "cache_on": on, "speedup": speedup}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
