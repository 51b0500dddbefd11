"""Memory per live session: the engine's RSS growth with ``sessions`` fresh sessions,
against the bytes of their state slots (``engine_bench --parts memory``)."""

from __future__ import annotations

import asyncio
import gc
import resource
from dataclasses import replace
from typing import Any

from bench.micro.workload import local_engine
from service.engine.core import EngineConfig


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


async def session_memory(config: EngineConfig, sessions: int) -> dict[str, Any]:
    cfg = replace(config, max_sessions=sessions, max_queue=8192)
    async with local_engine(cfg) as engine:
        gc.collect()
        before = _rss_bytes()
        ops = engine.ops()
        for start in range(0, sessions, 4096):
            count = min(4096, sessions - start)
            await asyncio.gather(*(ops.create([], 5, None) for _ in range(count)))
        gc.collect()
        delta = _rss_bytes() - before
        assert engine.runner is not None
        per_slot = engine.runner.pool.bytes_per_slot
    result = {
        "sessions": sessions,
        "rss_delta_bytes": delta,
        "bytes_per_session": delta / sessions,
        "raw_bytes_per_session": per_slot,
        "ratio_to_raw": delta / (per_slot * sessions),
    }
    print(
        f"{sessions} live sessions: RSS +{delta / 2**20:.1f} MiB "
        f"({result['ratio_to_raw']:.2f}x raw, {result['bytes_per_session']:.0f} B/session)",
        flush=True,
    )
    return result
