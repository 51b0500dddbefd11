"""Where session states live besides the state pool: ``memory`` (default) or Redis."""

from __future__ import annotations

from service.engine.store.base import SessionRecord, SessionStore, StoreConflict, StoreUnavailable
from service.engine.store.memory import MemoryStore

__all__ = [
    "MemoryStore",
    "SessionRecord",
    "SessionStore",
    "StoreConflict",
    "StoreUnavailable",
    "open_store",
]


def open_store(url: str, max_records: int = 1_000_000) -> SessionStore:
    """The store named by ``LSTM_SERVE_SESSION_STORE``: ``memory`` or ``redis://…``."""
    if url in ("", "memory"):
        return MemoryStore(max_records)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from service.engine.store.redis_store import RedisStore  # the redis client is optional

        return RedisStore(url)
    raise ValueError(f"unknown session store {url!r}: use 'memory' or 'redis://host:port/db'")
