"""The default store: records in this process's memory (nothing survives a restart).

With it the server behaves as before; it only holds the states of sessions that the
memory tiering moved out of the state pool (``max_resident_sessions``).
"""

from __future__ import annotations

import time

from service.engine.store.base import SessionRecord, StoreConflict, StoreUnavailable


class MemoryStore:
    persistent = False

    def __init__(self, max_records: int = 1_000_000) -> None:
        self.max_records = max_records
        self._records: dict[str, tuple[float, SessionRecord]] = {}  # id -> (expires, record)

    def __len__(self) -> int:
        return len(self._records)

    async def load(self, session_id: str) -> SessionRecord | None:
        entry = self._records.get(session_id)
        if entry is None:
            return None
        if entry[0] < time.time():
            del self._records[session_id]
            return None
        return entry[1]

    async def save(
        self, record: SessionRecord, expected_version: int, deadline_unix_s: float | None = None
    ) -> None:
        current = await self.load(record.id)
        stored = current.version if current is not None else 0
        if stored != expected_version:
            raise StoreConflict(
                f"session {record.id[:8]}: stored version {stored}, expected {expected_version}"
            )
        if current is None and len(self._records) >= self.max_records:
            self.prune()
            if len(self._records) >= self.max_records:
                raise StoreUnavailable(f"memory store full ({self.max_records} sessions)")
        self._records[record.id] = (time.time() + record.ttl_s, record)

    async def version(self, session_id: str) -> int | None:
        record = await self.load(session_id)
        return None if record is None else record.version

    async def delete(self, session_id: str) -> None:
        self._records.pop(session_id, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._records.clear()

    def prune(self) -> int:
        """Forget expired records; returns how many."""
        now = time.time()
        dead = [key for key, (expires, _) in self._records.items() if expires < now]
        for key in dead:
            del self._records[key]
        return len(dead)
