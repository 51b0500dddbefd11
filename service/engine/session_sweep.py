"""The session sweeper's pass: TTL expiry and the rewind-history gauge, a few hundred
sessions at a time.

Why in pieces: the sweeper runs on the engine's event loop, which holds the interpreter
lock that the inference thread needs between its kernels. One pass over every session
(``expired()`` and a set of every history slot) took 19-26 ms at 5,000 WebSocket
sessions with 32-token histories and grows with the sessions (0.4 s at 100,000): every five
seconds each live request waited that long, and at 80 % load a stall of S ms leaves a
queue that takes about 5 S to drain. Between pieces the loop reads its sockets and the
inference thread runs. And the histories' slots are counted, not gathered into a set:
the pass is ~10x cheaper (``python -m bench.micro.session_sweep``, BENCHMARKS §0.11).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.engine.sessions import Session, SessionRegistry

SWEEP_CHUNK = 256  # sessions looked at between two turns of the event loop


@dataclass(frozen=True)
class Swept:
    """What one pass found: sessions looked at, expired, and the pool slots held by rewind
    histories (a state a fork shares with its source counted once; a state shared with a
    save in flight, for a moment, not at all)."""

    looked_at: int
    expired: int
    history_slots: int


async def sweep_sessions(
    registry: SessionRegistry,
    expire: Callable[[Session], Awaitable[bool]],
    chunk: int = SWEEP_CHUNK,
) -> Swept:
    """Expire idle sessions past their TTL (``expire(session)``: True once it is gone)
    and count the history slots of the rest, yielding to the loop every ``chunk``
    sessions. Sessions that come or go meanwhile are seen or not; a session deleted
    before its turn is skipped."""
    now = time.time()
    expired = looked_at = history = 0
    for looked_at, session in enumerate(registry, 1):  # iterates a snapshot
        if looked_at % chunk == 0:
            await asyncio.sleep(0)
        if session.deleted:
            continue
        if registry.is_expired(session, now) and await expire(session):
            expired += 1
            continue
        history += session.history.slot_count()
    return Swept(looked_at, expired, max(0, history - registry.pool.shared_holds))
