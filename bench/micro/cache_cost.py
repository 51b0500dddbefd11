"""What the continuous cache adds to a one-word feed, in the engine alone (issue 18's cost).

python -m bench.micro.cache_cost [--model models/default] [--batches 1 8 64] [--rounds 40]

Sessions with and without a cache live in one engine, each first fed 600 words so that
every cached window is full (500 pairs for the bundled model); then rounds of one-word
feeds with k=5, ``batch`` sessions at a time, alternate between the two kinds. The time is
the worker's ``runner.step`` per step (the engine's compute, no channel, no HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

from service.engine.core import Engine, EngineConfig

PREFILL_WORDS = 600


async def measure(model: Path, batches: list[int], rounds: int) -> list[tuple[int, float, float]]:
    engine = Engine(EngineConfig(model, device="cpu", threads=1, max_sessions=10_000))
    await engine.start()
    assert engine.runner is not None
    ops, runner = engine.ops(), engine.runner
    vocabulary = runner.vocabulary.words
    rng = random.Random(0)
    words = [rng.randrange(len(vocabulary)) for _ in range(PREFILL_WORDS)]
    spent: list[float] = []
    real_step = runner.step

    def timed(rows):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return real_step(rows)
        finally:
            spent.append(time.perf_counter() - started)

    runner.step = timed  # type: ignore[method-assign]
    results = []
    for batch in batches:
        kinds = {}
        for cached in (True, False):
            made = [await ops.create(words, 0, None, cached) for _ in range(batch)]
            kinds[cached] = [s.session_id for s in made]
        times: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(rounds):
            for cached in (True, False) if round_ % 2 else (False, True):
                spent.clear()
                word = [rng.randrange(len(vocabulary))]
                await asyncio.gather(*(ops.feed(s, word, 5, None) for s in kinds[cached]))
                times[cached].append(sum(spent))
        for ids in kinds.values():
            for session_id in ids:
                await ops.remove(session_id, None)
        results.append((batch, statistics.median(times[False]), statistics.median(times[True])))
    await engine.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.model, args.batches, args.rounds))
    print("| sessions per step | no cache, ms/step | cache, ms/step | added |")
    print("| ---: | ---: | ---: | ---: |")
    for batch, plain, cached in rows:
        print(f"| {batch} | {plain * 1e3:.3f} | {cached * 1e3:.3f} | {cached / plain - 1:+.1%} |")


if __name__ == "__main__":
    main()
