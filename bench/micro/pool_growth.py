"""How long a growth of the state pool (and of the continuous caches' rings) stops the
inference thread: into tensors made ahead on a helper thread (``SpareTensors``) against
made on the spot, and (the pool) inside address space reserved first (``StatePool.reserve``,
the engine's default on a CPU), at each size the pool passes on its way up.

    python -m bench.micro.pool_growth --model models/default --up-to 250000

Each growth is timed alone (``ensure_capacity``) after the slots that trigger it were
handed out; ``--head-start-s`` is how long the helper thread gets first (in a server,
the time between 90 % and 100 % full).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from bench.json_out import write_result
from models.checkpoint import read_config
from models.continuous_cache import CacheParams
from service.engine.session_cache import CachePool
from service.engine.state_pool import StatePool

Growths = list[tuple[int, float]]  # (slots after the growth, ms it took)


def pool_growths(
    hidden: int, layers: int, up_to: int, spare: bool, head_start_s: float, reserve: int = 0
) -> Growths:
    """Each growth of a pool from 1,024 slots past ``up_to``; ``reserve``: slots of address
    space reserved first (``StatePool.reserve``, what the engine does on a CPU)."""
    pool = StatePool(layers, hidden, 1024, torch.device("cpu"))
    if not spare:
        pool._spares = None
    if reserve:
        assert pool.reserve(reserve), "the kernel refused the reservation"
    out: Growths = []
    while pool.capacity < up_to:
        for _ in range(pool.capacity - pool.in_use + 1):
            pool.allocate()
        time.sleep(head_start_s if spare else 0.0)
        started = time.perf_counter()
        pool.ensure_capacity()
        out.append((pool.capacity, round((time.perf_counter() - started) * 1e3, 2)))
    return out


def cache_growths(hidden: int, up_to: int, spare: bool, head_start_s: float) -> Growths:
    params = CacheParams(theta=1.0, lam=0.1, window=100)
    caches = CachePool(params, hidden, 32, 1 << 40, torch.device("cpu"), capacity=4096)
    if not spare:
        caches._spares = None
    out: Growths = []
    while caches.keys.shape[0] < up_to:
        for _ in range(caches.keys.shape[0] - caches.in_use + 1):
            caches.allocate()
        time.sleep(head_start_s if spare else 0.0)
        started = time.perf_counter()
        caches.ensure_capacity()
        out.append((caches.keys.shape[0], round((time.perf_counter() - started) * 1e3, 1)))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument(
        "--up-to", type=int, default=250_000, help="grow the state pool past this many slots"
    )
    parser.add_argument(
        "--cache-up-to",
        type=int,
        default=14_000,
        help="grow the caches past this many rings (0: skip)",
    )
    parser.add_argument("--head-start-s", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = read_config(args.model)["architecture"]
    hidden, layers = int(config["hidden_size"]), int(config["num_layers"])
    result: dict[str, Any] = {"model": str(args.model), "head_start_s": args.head_start_s}
    for spare in (False, True):
        key = "made_ahead" if spare else "on_the_spot"
        result[f"pool_{key}"] = pool_growths(hidden, layers, args.up_to, spare, args.head_start_s)
        if args.cache_up_to:
            result[f"caches_{key}"] = cache_growths(
                hidden, args.cache_up_to, spare, args.head_start_s
            )
    reserve = 2 * args.up_to
    result["pool_reserved"] = pool_growths(hidden, layers, args.up_to, True, 0.0, reserve)
    result["pool_reserved_slots"] = reserve
    print("\npool: slots after the growth, ms on the spot, made ahead, in a reservation")
    pairs = zip(
        result["pool_on_the_spot"], result["pool_made_ahead"], result["pool_reserved"], strict=True
    )
    for (slots, slow), (_, fast), (_, reserved) in pairs:
        print(f"  {slots:>8}  {slow:8.1f}  {fast:8.1f}  {reserved:8.2f}")
    if "caches_on_the_spot" in result:
        print("\ncaches: rings after the growth, ms on the spot, ms made ahead")
        pairs = zip(result["caches_on_the_spot"], result["caches_made_ahead"], strict=True)
        for (slots, slow), (_, fast) in pairs:
            print(f"  {slots:>8}  {slow:8.1f}  {fast:8.1f}")
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
