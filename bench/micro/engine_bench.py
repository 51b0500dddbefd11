"""Engine benchmark without HTTP: the bare model, predict, session feeds, generation, memory.

    python -m bench.micro.engine_bench --model models/default --json bench/out/engine.json
    python -m bench.micro.engine_bench --parts bare,predict --levels 64 --threads 1 \
        --batch-sizes 256 --bodies bench/out/bodies.jsonl          # issue 13's rows (a), (b)

The engine gets word ids, as the engine process does (the API process tokenises): the
bodies are tokenised once up front. ``--via channel|process`` reaches the engine through
``EngineClient`` instead (same process, or a real engine process). Everything runs in one
process and one run, so the batching-off baseline (``--batch-sizes 256,1``) shares the
machine's state with what it is compared to.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.args import int_list
from bench.http.padded import padded_top_k
from bench.json_out import write_result
from bench.micro.session_memory import session_memory
from bench.micro.workload import (
    VIAS,
    Workload,
    closed_loop,
    engine_client,
    feed_words,
    local_engine,
    workload,
)
from models.checkpoint import Checkpoint, load
from models.packed_linear import KERNELS, Kernel
from service.cpu_sharing import tune_garbage_collector
from service.engine.core import EngineConfig, GenerationRequest
from service.engine.generation import GenerationStream
from service.engine.runner import Row
from service.engine.sampling import SamplingParams

PARTS = "bare,lone,predict,feeds,generation,memory"


def bare_model(
    checkpoint: Checkpoint, work: Workload, batch: int, duration_s: float, kernels: Kernel
) -> dict[str, Any]:
    """Rows/s of ideal padded batches of ``batch`` (no engine, no queue): the ceiling."""
    model, eos = checkpoint.model.eval(), checkpoint.vocabulary.eos_id
    model.prepare_for_serving(kernels)  # the decoder kernel the engine serves with
    batches = [work.ids[i : i + batch] for i in range(0, len(work.ids) - batch + 1, batch)]
    for ids in work.ids[:5]:  # warm-up
        padded_top_k(model, eos, [ids], 5)
    single = []
    for ids in work.ids[:200]:
        started = time.perf_counter()
        padded_top_k(model, eos, [ids], 5)
        single.append(time.perf_counter() - started)
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration_s:
        rows += len(padded_top_k(model, eos, batches[rows // batch % len(batches)], 5))
    rate = rows / (time.perf_counter() - started)
    result = {"batch": batch, "rows_per_s": rate, "lone_step_ms": statistics.median(single) * 1e3}
    print(
        f"bare model: padded batches of {batch}: {rate:8.1f} rows/s; one row "
        f"{result['lone_step_ms']:.3f} ms (median)",
        flush=True,
    )
    return result


async def lone_overhead(config: EngineConfig, work: Workload, repeats: int) -> dict[str, float]:
    """A lone predict through the engine vs the bare model step on the same ids."""
    async with local_engine(config) as engine:
        ids = work.ids[0]
        runner = engine.runner
        assert runner is not None
        slot = runner.pool.allocate()
        bare, full = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            runner.step([Row(slot, ids, reset=True, top_k=5)])
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            await engine.predict(ids, 5)
            full.append(time.perf_counter() - started)
    bare_ms, full_ms = statistics.median(bare) * 1e3, statistics.median(full) * 1e3
    print(
        f"lone predict: bare model step {bare_ms:.3f} ms, through the engine {full_ms:.3f} ms "
        f"(+{full_ms - bare_ms:.3f} ms)",
        flush=True,
    )
    return {"bare_step_ms": bare_ms, "engine_ms": full_ms, "added_ms": full_ms - bare_ms}


async def predict_level(
    config: EngineConfig, work: Workload, via: str, level: int, s: float
) -> dict[str, Any]:
    """One closed-loop level of predict (k=5) against a fresh engine reached ``via``."""
    if via == "engine":
        async with local_engine(config) as engine:
            return await closed_loop(
                lambda i: engine.predict(work.ids[i % len(work.ids)], 5), level, s
            )
    async with engine_client(config, via) as client:
        texts = work.texts
        return await closed_loop(lambda i: client.predict(texts[i % len(texts)]), level, s)


async def predict_sweep(
    config: EngineConfig, work: Workload, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    for batch in args.batch_sizes:
        for level in args.levels:
            cfg = replace(config, max_batch_size=batch, max_queue=4096)
            result = await predict_level(cfg, work, args.via, level, args.duration_s)
            batching = "on" if batch > 1 else "off"
            rows.append({"batching": batching, "via": args.via, **result})
            print(
                f"predict via {args.via} batching={batching:3} c={level:4} "
                f"{result['throughput_rps']:8.1f} req/s p50 {result['p50']:7.2f} ms "
                f"p99 {result['p99']:7.2f} ms",
                flush=True,
            )
    return rows


async def session_feeds(
    config: EngineConfig, feeds: Workload, via: str, sessions: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One-word feeds (k=5) spread over ``sessions`` live sessions, closed loop; the words
    are ``--feed-words`` (``feed_words``): ``loadgen`` makes the engine alone and a
    WebSocket run feed the same words."""
    cfg = replace(config, max_queue=8192, max_sessions=sessions * 2)
    words, texts = feeds.ids, feeds.texts
    rng = random.Random(0)
    if via == "engine":
        async with local_engine(cfg) as engine:
            ops = engine.ops()
            ids = [(await ops.create([], 5, None)).session_id for _ in range(sessions)]
            result = await closed_loop(
                lambda i: ops.feed(rng.choice(ids), words[i % len(words)], 5, None),
                args.feed_concurrency,
                args.duration_s,
            )
    else:
        async with engine_client(cfg, via) as client:
            ids = [(await client.create_session()).session_id for _ in range(sessions)]
            result = await closed_loop(
                lambda i: client.feed(rng.choice(ids), texts[i % len(texts)]),
                args.feed_concurrency,
                args.duration_s,
            )
    result = {
        "sessions": sessions,
        "via": via,
        "words": args.feed_words,
        "tokens_per_feed": sum(map(len, words)) / len(words),
        "feeds_per_s": result["throughput_rps"],
        **result,
    }
    print(
        f"feeds ({args.feed_words} words, {result['tokens_per_feed']:.3f} tokens each) "
        f"via {via} with {sessions} live sessions, {args.feed_concurrency} in flight: "
        f"{result['feeds_per_s']:.0f} feeds/s p50 {result['p50']:.2f} ms "
        f"p99 {result['p99']:.2f} ms",
        flush=True,
    )
    return result


async def generation(
    config: EngineConfig, work: Workload, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    request = GenerationRequest(
        max_tokens=args.max_tokens, sampling=SamplingParams(1.0), stop_at_eos=False
    )
    for batch in args.batch_sizes:
        async with local_engine(replace(config, max_batch_size=batch)) as engine:
            started = time.perf_counter()
            streams = [engine.generate(ids, request) for ids in work.ids[:64]]
            results = await asyncio.gather(*(_count(s) for s in streams))
            elapsed = time.perf_counter() - started
        words = sum(results)
        batching = "on" if batch > 1 else "off"
        rows.append({"batching": batching, "words": words, "words_per_s": words / elapsed})
        print(f"generation batching={batching}: {words / elapsed:.0f} words/s", flush=True)
    return rows


async def _count(stream: GenerationStream) -> int:
    return len([token async for token in stream])


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = EngineConfig(
        args.model,
        device=args.device,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        cuda_graphs=args.cuda_graphs,
        cpu_kernels=args.cpu_kernels,
    )
    checkpoint = load(args.model)
    work = workload(checkpoint, args.bodies)
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "threads": args.threads,
        "model": str(args.model),
        "device": args.device,
        "cuda_graphs": args.cuda_graphs,
        "cpu_kernels": args.cpu_kernels,
        "max_batch_size": args.max_batch_size,
        "bodies": str(args.bodies or "bench.loadgen.texts"),
    }
    parts = set(args.parts.split(","))
    if "bare" in parts:
        out["bare"] = bare_model(checkpoint, work, 64, args.duration_s, args.cpu_kernels)
    if "lone" in parts:
        out["lone_overhead"] = await lone_overhead(config, work, args.repeats)
    if "predict" in parts:
        out["predict"] = await predict_sweep(config, work, args)
    if "feeds" in parts:
        feeds = feed_words(checkpoint, work, args.feed_words)
        out["feeds"] = [
            await session_feeds(config, feeds, args.via, n, args) for n in args.feed_sessions
        ]
    if "generation" in parts:
        out["generation"] = await generation(config, work, args)
    if "memory" in parts:
        out["memory"] = await session_memory(config, args.memory_sessions)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", type=Path, default=Path("models/default"))
    add("--bodies", type=Path, help="JSON-lines bodies (bench.http.bodies); default: built-in")
    add("--parts", default=PARTS, help=f"which sections to run (default {PARTS})")
    add("--via", choices=VIAS, default="engine", help="how predict/feeds reach the engine")
    add("--levels", type=int_list, default=[1, 4, 16, 64, 256], help="predict concurrency")
    add("--batch-sizes", type=int_list, default=[256, 1], help="max_batch_size (1 = off)")
    add("--duration-s", type=float, default=5.0)
    add("--repeats", type=int, default=200)
    add("--feed-sessions", type=int_list, default=[1000, 10000])
    add("--feed-concurrency", type=int, default=256)
    add(
        "--feed-words",
        choices=("bodies", "loadgen"),
        default="bodies",
        help="feeds: one token of the bodies each, or the words lstm-serve-bench ws sends",
    )
    add("--max-tokens", type=int, default=50)
    add("--memory-sessions", type=int, default=100_000)
    add("--device", default="cpu", help="cpu or cuda")
    add("--cuda-graphs", action="store_true", help="replay one-token steps from CUDA graphs")
    add("--cpu-kernels", choices=KERNELS, default="auto", help="oneDNN packed or default")
    add("--max-batch-size", type=int, default=256, help="feeds/lone: most rows in one step")
    add("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # the bare model runs in this thread too
    tune_garbage_collector()  # as the engine process does, so the comparison is fair
    result = asyncio.run(main_async(args))
    write_result(args.json, result)


if __name__ == "__main__":
    main()
