"""How long the session sweeper holds the engine's event loop: the pass as it was (a list
of idle sessions, then a set of every history slot), the pass that counts the slots in
one go, and the same in pieces of ``SWEEP_CHUNK`` sessions (what the engine does).

    python -m bench.micro.session_sweep --sessions 5000 20000 100000

Each session holds a rewind history of ``--history`` tokens (one pool slot each, as a
WebSocket session does at the default ``LSTM_SERVE_SESSION_HISTORY``) and none is idle
past its TTL, so a pass only looks. A ticker task on the same loop records the longest
time between two of its turns: what a feed arriving meanwhile waits before the engine
even reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.json_out import write_result
from service.engine.history import History
from service.engine.session_sweep import SWEEP_CHUNK, sweep_sessions
from service.engine.sessions import Session, SessionRegistry
from service.engine.state_pool import StatePool


def registry_of(sessions: int, history: int) -> SessionRegistry:
    """``sessions`` live sessions, each with ``history`` history slots of its own."""
    pool = StatePool(1, 4, 1024, torch.device("cpu"))
    registry = SessionRegistry(pool, max_sessions=sessions, ttl_s=3600.0)
    for i in range(sessions):
        session = registry.create(owner=None)
        first = sessions + i * history
        entries = [(p, first + p) for p in range(history)]
        session.history = History(entries, list(range(history)), 0)
    return registry


async def timed_pass(registry: SessionRegistry, variant: str) -> tuple[float, float]:
    """(ms the pass took, longest ms the loop went without a turn meanwhile)."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    if variant == "before":
        await set_pass(registry)
    else:
        chunk = SWEEP_CHUNK if variant == "pieces" else len(registry) + 1
        await sweep_sessions(registry, _keep, chunk=chunk)
    took = time.perf_counter() - started
    running = False
    await task
    return took * 1e3, longest * 1e3


async def _keep(session: Session) -> bool:
    return False


async def set_pass(registry: SessionRegistry) -> None:
    """The pass as it was (the baseline): every idle session in one list, then every
    history slot in one set."""
    now = time.time()
    for session in [s for s in registry if registry.is_expired(s, now)]:
        await _keep(session)
    len({slot for s in registry for slot in s.history.slots()})


VARIANTS = ("before", "one_pass", "pieces")


def measure(sessions: int, history: int, repeats: int) -> dict[str, Any]:
    registry = registry_of(sessions, history)
    row: dict[str, Any] = {"sessions": sessions, "history_slots": sessions * history}
    for variant in VARIANTS:
        runs = [asyncio.run(timed_pass(registry, variant)) for _ in range(repeats)]
        row[variant] = {
            "pass_ms": round(statistics.median(r[0] for r in runs), 2),
            "longest_stall_ms": round(statistics.median(r[1] for r in runs), 2),
        }
    row["stall_ratio"] = round(
        row["before"]["longest_stall_ms"] / row["pieces"]["longest_stall_ms"], 1
    )
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[5_000, 20_000, 100_000])
    parser.add_argument("--history", type=int, default=33, help="slots per session's history")
    parser.add_argument("--repeats", type=int, default=3, help="passes per variant (median)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [measure(n, args.history, args.repeats) for n in args.sessions]
    print(
        f"{'':9} | {'before (a set)':^19} | {'counted, one pass':^19} | {'counted, pieces':^19} |"
    )
    print(
        f"{'sessions':>9} | {'pass ms':>8} {'stall ms':>10} | {'pass ms':>8} {'stall ms':>10} | "
        f"{'pass ms':>8} {'stall ms':>10} | stall before/pieces"
    )
    for row in rows:
        cells = " | ".join(
            f"{row[v]['pass_ms']:>8.1f} {row[v]['longest_stall_ms']:>10.2f}" for v in VARIANTS
        )
        print(f"{row['sessions']:>9,} | {cells} | {row['stall_ratio']:>6.0f}x")
    write_result(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
