"""Session-steps/s of the inference thread alone: ``ModelRunner.step`` over live sessions.

    python -m bench.micro.step_rate --model models/default --sessions 10000 \
        --batch-sizes 64,256,1024 --device cuda --graphs off,on

Each step feeds one word to each of ``B`` distinct sessions drawn from ``--sessions`` live
slots, as a session feed asks (top-5, the word's log-prob, the state before it saved to
a rewind-history slot), and answers on the host. No queue, no event loop, no client: the
ceiling the engine's Python per-feed work is measured against (``engine_bench --parts
feeds`` is the whole engine). ``--graphs on`` replays the one-token step from CUDA graphs
(``LSTM_SERVE_CUDA_GRAPHS``; on a CPU the same bucketed path runs eagerly).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.args import int_list
from bench.json_out import write_result
from models.checkpoint import load
from service.engine.config import pick_device
from service.engine.runner import ModelRunner, Row


def step_rate(
    runner: ModelRunner, sessions: list[int], saves: list[int], batch: int, duration_s: float
) -> dict[str, Any]:
    """Steps of ``batch`` one-word feeds for ``duration_s``: rows/s and step times."""
    rng = random.Random(batch)
    vocab = len(runner.vocabulary)

    def rows() -> list[Row]:
        chosen = rng.sample(sessions, batch)
        return [
            Row(slot, [rng.randrange(1, vocab)], top_k=5, token_logprobs=True, save_to=save)
            for slot, save in zip(chosen, saves, strict=False)
        ]

    for _ in range(3):  # warm-up: kernels picked, buffers grown
        runner.step(rows())
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        batch_rows = rows()
        begin = time.perf_counter()
        runner.step(batch_rows)
        times.append(time.perf_counter() - begin)
    total = sum(times)
    return {
        "batch": batch,
        "steps": len(times),
        "rows_per_s": batch * len(times) / total,
        "step_ms_p50": statistics.median(times) * 1e3,
        "step_ms_p99": sorted(times)[math.ceil(0.99 * (len(times) - 1))] * 1e3,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = pick_device(args.device)
    out: dict[str, Any] = {"model": str(args.model), "device": str(device), "rows": []}
    for graphs in args.graphs:
        checkpoint = load(args.model, device)
        runner = ModelRunner(
            checkpoint, device, args.sessions + max(args.batch_sizes), graphs == "on"
        )
        sessions = [runner.pool.allocate() for _ in range(args.sessions)]
        saves = [runner.pool.allocate() for _ in range(max(args.batch_sizes))]
        runner.warm_up()
        for batch in args.batch_sizes:
            row = {"graphs": graphs, **step_rate(runner, sessions, saves, batch, args.duration_s)}
            out["rows"].append(row)
            print(
                f"step_rate {args.model.name} graphs={graphs:3} B={batch:5}: "
                f"{row['rows_per_s']:10.0f} session-steps/s, step p50 "
                f"{row['step_ms_p50']:.3f} ms p99 {row['step_ms_p99']:.3f} ms",
                flush=True,
            )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--batch-sizes", type=int_list, default=[64, 256, 1024])
    parser.add_argument("--graphs", type=lambda s: s.split(","), default=["off"])
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", type=Path)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if max(args.batch_sizes) > args.sessions:
        raise SystemExit("--batch-sizes must not exceed --sessions (rows name distinct slots)")
    result = run(args)
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
