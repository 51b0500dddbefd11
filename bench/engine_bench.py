"""Engine-only benchmark (no HTTP): batching on vs off, session feeds, generation, memory.

    python -m bench.engine_bench --model models/default --json bench/results/engine.json

Everything runs in one process and one run, so the batching-off baseline (the same
engine with ``max_batch_size=1``) shares the machine's state with what it is compared to.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.stats import latency_summary_ms
from bench.texts import SENTENCES
from service.engine.core import Engine, EngineConfig, GenerationRequest
from service.engine.runner import Row
from service.engine.sampling import SamplingParams

DEVICE = "cpu"  # set by --device
THREADS = 0  # set by --threads (0: the server default, every CPU but one)


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(SENTENCES) for _ in range(count)]


async def _closed_loop(
    engine: Engine, concurrency: int, duration_s: float, texts: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def user(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await engine.predict(texts[i % len(texts)], k=5)
            latencies.append(time.perf_counter() - started)
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        **latency_summary_ms(latencies),
    }


async def predict_sweep(model: Path, levels: list[int], duration_s: float) -> list[dict[str, Any]]:
    texts = _texts(512)
    rows = []
    for batch in (256, 1):
        engine = Engine(
            EngineConfig(
                model, device=DEVICE, threads=THREADS, max_batch_size=batch, max_queue=4096
            )
        )
        await engine.start()
        for level in levels:
            result = await _closed_loop(engine, level, duration_s, texts)
            rows.append({"batching": "on" if batch > 1 else "off", **result})
            print(
                f"predict batching={'on' if batch > 1 else 'off':3} c={level:4} "
                f"{result['throughput_rps']:8.1f} req/s p50 {result['p50']:7.2f} ms "
                f"p99 {result['p99']:7.2f} ms",
                flush=True,
            )
        await engine.stop()
    return rows


async def lone_overhead(model: Path, repeats: int) -> dict[str, float]:
    """A lone predict through the engine vs the bare model step on the same input."""
    engine = Engine(EngineConfig(model, device=DEVICE, threads=THREADS))
    await engine.start()
    text = SENTENCES[0]
    _, ids = engine.encode(text)
    runner = engine.runner
    assert runner is not None
    slot = runner.pool.allocate()
    bare, full = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        runner.step([Row(slot, ids, reset=True, top_k=5)])
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        await engine.predict(text, k=5)
        full.append(time.perf_counter() - started)
    await engine.stop()
    bare_ms, full_ms = statistics.median(bare) * 1e3, statistics.median(full) * 1e3
    print(
        f"lone predict: bare model step {bare_ms:.3f} ms, through the engine {full_ms:.3f} ms "
        f"(+{full_ms - bare_ms:.3f} ms)",
        flush=True,
    )
    return {"bare_step_ms": bare_ms, "engine_ms": full_ms, "added_ms": full_ms - bare_ms}


async def _create_sessions(engine: Engine, count: int, chunk: int = 4096) -> list[str]:
    """Create ``count`` empty sessions, ``chunk`` at a time (the queue is bounded)."""
    ids: list[str] = []
    for start in range(0, count, chunk):
        created = await asyncio.gather(
            *(engine.create_session("") for _ in range(min(chunk, count - start)))
        )
        ids.extend(s.session_id for s in created)
    return ids


async def session_feeds(
    model: Path, sessions: int, concurrency: int, duration_s: float
) -> dict[str, Any]:
    engine = Engine(
        EngineConfig(
            model, device=DEVICE, threads=THREADS, max_queue=8192, max_sessions=sessions * 2
        )
    )
    await engine.start()
    ids = await _create_sessions(engine, sessions)
    words = [w for s in SENTENCES for w in s.split()]
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def feeder(index: int) -> None:
        mine = ids[index::concurrency]
        rng = random.Random(index)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await engine.feed(rng.choice(mine), rng.choice(words), k=5)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(feeder(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    await engine.stop()
    result = {
        "sessions": sessions,
        "concurrency": concurrency,
        "feeds": len(latencies),
        "feeds_per_s": len(latencies) / elapsed,
        **latency_summary_ms(latencies),
    }
    print(
        f"feeds with {sessions} live sessions, {concurrency} in flight: "
        f"{result['feeds_per_s']:.0f} feeds/s p50 {result['p50']:.2f} ms "
        f"p99 {result['p99']:.2f} ms",
        flush=True,
    )
    return result


async def generation(model: Path, concurrency: int, max_tokens: int) -> list[dict[str, Any]]:
    rows = []
    for batch in (256, 1):
        engine = Engine(EngineConfig(model, device=DEVICE, threads=THREADS, max_batch_size=batch))
        await engine.start()
        request = GenerationRequest(
            max_tokens=max_tokens, sampling=SamplingParams(1.0), stop_at_eos=False
        )
        started = time.perf_counter()
        streams = [await engine.generate(t, request) for t in _texts(concurrency, 1)]
        results = await asyncio.gather(*(s.collect() for s in streams))
        elapsed = time.perf_counter() - started
        words = sum(len(r) for r in results)
        await engine.stop()
        rows.append(
            {
                "batching": "on" if batch > 1 else "off",
                "generations": concurrency,
                "words": words,
                "words_per_s": words / elapsed,
            }
        )
        print(
            f"generation batching={'on' if batch > 1 else 'off'}: {concurrency} x "
            f"{max_tokens} words, {words / elapsed:.0f} words/s",
            flush=True,
        )
    return rows


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


async def session_memory(model: Path, sessions: int) -> dict[str, Any]:
    engine = Engine(
        EngineConfig(
            model,
            device=DEVICE,
            threads=THREADS,
            max_sessions=sessions,
            max_queue=8192,
            initial_pool_slots=1024,
        )
    )
    await engine.start()
    gc.collect()
    before = _rss_bytes()
    await _create_sessions(engine, sessions)
    gc.collect()
    after = _rss_bytes()
    runner = engine.runner
    assert runner is not None
    raw = runner.pool.bytes_per_slot * sessions
    result = {
        "sessions": sessions,
        "rss_delta_bytes": after - before,
        "raw_state_bytes": raw,
        "bytes_per_session": (after - before) / sessions,
        "raw_bytes_per_session": runner.pool.bytes_per_slot,
        "ratio_to_raw": (after - before) / raw,
        "pool_capacity": runner.pool.capacity,
    }
    await engine.stop()
    print(
        f"{sessions} live sessions: RSS +{(after - before) / 2**20:.1f} MiB, raw state "
        f"{raw / 2**20:.1f} MiB ({result['ratio_to_raw']:.2f}x raw, "
        f"{result['bytes_per_session']:.0f} B/session)",
        flush=True,
    )
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(x) for x in args.levels.split(",")]
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": str(args.model),
        "device": DEVICE,
    }
    parts = set(args.parts.split(","))
    if "lone" in parts:
        out["lone_overhead"] = await lone_overhead(args.model, args.repeats)
    if "predict" in parts:
        out["predict"] = await predict_sweep(args.model, levels, args.duration_s)
    if "feeds" in parts:
        out["feeds"] = [
            await session_feeds(args.model, n, args.feed_concurrency, args.duration_s)
            for n in (1000, 10000)
        ]
    if "generation" in parts:
        out["generation"] = await generation(args.model, 64, args.max_tokens)
    if "memory" in parts:
        out["memory"] = await session_memory(args.model, args.memory_sessions)
    by = {(r["batching"], r["concurrency"]): r for r in out.get("predict", [])}
    if ("on", 64) in by and ("off", 64) in by:
        out["batching_speedup_at_64"] = (
            by[("on", 64)]["throughput_rps"] / by[("off", 64)]["throughput_rps"]
        )
        print(f"batching speed-up at 64 concurrent: {out['batching_speedup_at_64']:.1f}x")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--levels", default="1,4,16,64,256")
    parser.add_argument(
        "--parts", default="lone,predict,feeds,generation,memory", help="which sections to run"
    )
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--feed-concurrency", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=50)
    parser.add_argument("--memory-sessions", type=int, default=100_000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: the server default; BENCHMARKS.md §2 used 2)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    global DEVICE, THREADS
    DEVICE, THREADS = args.device, args.threads
    result = asyncio.run(main_async(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
