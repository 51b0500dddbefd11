"""What durable sessions cost: feed latency with the memory store vs Redis (sync and
write-behind), and Redis memory per stored session. Engine only (no HTTP), one run.

    python -m bench.micro.session_store_bench --model models/default --json bench/results/store.json

Starts its own ``redis-server`` on a free loopback port (append-only file on, fsync every
second, Redis's default) unless ``--redis-url`` names one. The three engines run in one
process and their feeds alternate (memory, sync, write-behind, memory, ...), so drift in
the machine's load hits them alike; "added" is the median of the per-round differences.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench.json_out import write_result
from bench.loadgen.stats import latency_summary_ms
from bench.serverproc import free_port
from models.tokenizer import Tokenizer
from service.engine.core import Engine, EngineConfig
from service.settings import DEFAULT_MODEL_PATH

WORDS = (
    "the company said it expects sales to rise sharply next year as investors "
    "worried that rates will raise again"
).split()
MODES = {
    "memory": {},
    "redis-sync": {"session_durability": "sync"},
    "redis-write-behind": {"session_durability": "write-behind"},
}


@contextlib.contextmanager
def _redis_server(appendfsync: str) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (or pass --redis-url)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                directory,
                "--appendonly",
                "yes",
                "--appendfsync",
                appendfsync,
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            for _ in range(200):
                with contextlib.suppress(redis.ConnectionError):
                    client.ping()
                    break
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def _word_ids(engine: Engine) -> list[list[int]]:
    """``WORDS`` as ids, tokenised once: the API process tokenises, the engine gets ids."""
    assert engine.checkpoint is not None
    tokenizer = Tokenizer(engine.checkpoint.normalizer, engine.checkpoint.vocabulary)
    return [tokenizer.encode(word)[1] for word in WORDS]


async def _feeds(engines: dict[str, Engine], rounds: int, warmup: int) -> dict[str, list[float]]:
    sessions = {name: (await e.ops().create([], 5, None)).session_id for name, e in engines.items()}
    words = _word_ids(engines["memory"])
    latencies: dict[str, list[float]] = {name: [] for name in engines}
    for i in range(warmup + rounds):
        ids = words[i % len(words)]
        for name, engine in engines.items():
            started = time.perf_counter()
            await engine.ops().feed(sessions[name], ids, 5, None)
            if i >= warmup:
                latencies[name].append(time.perf_counter() - started)
    return latencies


async def _bytes_per_session(engine: Engine, url: str, count: int) -> dict[str, float]:
    """INFO used_memory delta / sessions (includes connection buffers, amortised), and
    MEMORY USAGE of stored keys (the key itself)."""
    client = redis.Redis.from_url(url)
    before = int(client.info("memory")["used_memory"])
    ids: list[str] = []
    ops, prompt = engine.ops(), [i for ids in _word_ids(engine)[:3] for i in ids]
    for first in range(0, count, 64):
        steps = await asyncio.gather(
            *(ops.create(prompt, 5, None) for _ in range(min(64, count - first)))
        )
        ids.extend(step.session_id for step in steps)
    after = int(client.info("memory")["used_memory"])
    sample = [client.memory_usage(f"lstm-serve:session:{sid}") or 0 for sid in ids[:200]]
    for sid in ids:
        await ops.remove(sid, None)
    return {"info_delta": (after - before) / count, "memory_usage_key": statistics.mean(sample)}


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    engines: dict[str, Engine] = {}
    try:
        for name, extra in MODES.items():
            store = "memory" if name == "memory" else url
            engine = Engine(
                EngineConfig(
                    args.model,
                    device=args.device,
                    session_store=store,
                    threads=args.threads,
                    **extra,
                )
            )  # type: ignore[arg-type]
            await engine.start()
            engines[name] = engine
        latencies = await _feeds(engines, args.feeds, args.warmup)
        base = latencies["memory"]
        out: dict[str, Any] = {
            "feeds": args.feeds,
            "model": engines["memory"].model_id,
            "redis": url,
            "appendfsync": args.appendfsync,
            "modes": {},
        }
        for name, values in latencies.items():
            added = [v - b for v, b in zip(values, base, strict=True)]
            out["modes"][name] = {
                "latency_ms": latency_summary_ms(values),
                "added_ms_p50": statistics.median(added) * 1e3,
                "added_ms_p99": sorted(added)[int(0.99 * (len(added) - 1))] * 1e3,
            }
        pool = engines["memory"].runner.pool  # type: ignore[union-attr]
        out["state_bytes_per_session"] = pool.bytes_per_slot
        out["store_bytes_per_session"] = await _bytes_per_session(
            engines["redis-sync"], url, args.sessions
        )
        out["record_bytes"] = _record_size(engines["redis-sync"])
        out["sessions_measured"] = args.sessions
        return out
    finally:
        for engine in engines.values():
            await engine.stop()


def _record_size(engine: Engine) -> int:
    """Bytes of one encoded SessionRecord (header + h + c) for this model."""
    from service.engine.store import SessionRecord

    pool = engine.runner.pool  # type: ignore[union-attr]
    state = b"\0" * (pool.layers * pool.hidden * 4)
    record = SessionRecord(
        "x" * 32,
        None,
        10,
        time.time(),
        time.time(),
        3600.0,
        engine.checkpoint.weights_sha256,
        12,
        state,
        state,  # type: ignore[union-attr]
        shape=(pool.layers, pool.hidden),
    )
    return len(record.encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=5000, help="for the memory figure")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead")
    parser.add_argument("--appendfsync", default="everysec", choices=["everysec", "always"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.redis_url:
        result = asyncio.run(run(args, args.redis_url))
    else:
        with _redis_server(args.appendfsync) as url:
            result = asyncio.run(run(args, url))
    print(json.dumps(result, indent=2))
    write_result(args.json, result, indent=2)


if __name__ == "__main__":
    main()
