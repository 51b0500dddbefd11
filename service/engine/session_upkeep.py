"""Removal, TTL expiry, tiering and flushing of durable sessions.

Mixed into ``DurableSessions`` (``service.engine.durable``), which holds the state these
methods use; kept apart so that each file reads on its own: that one is about making a
change durable and resuming, this one about sessions leaving (the pool or for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.engine.errors import NotReady, SessionNotFound
from service.engine.metrics import EngineMetrics
from service.engine.sessions import Session, SessionRegistry
from service.engine.store import SessionRecord, SessionStore, StoreUnavailable

log = logging.getLogger(__name__)


class SessionMoved(Exception):
    """The store holds a newer state than this replica's copy: reload and redo."""


class SessionUpkeep:
    store: SessionStore
    registry: SessionRegistry
    metrics: EngineMetrics
    max_resident: int
    write_behind_interval_s: float
    _pending: dict[str, tuple[Session, SessionRecord, int]]

    @property
    def persistent(self) -> bool:
        raise NotImplementedError

    async def _snapshot_and_save(self, session: Session) -> None:
        raise NotImplementedError

    async def _save(
        self,
        session: Session,
        record: SessionRecord,
        epoch: int,
        acknowledging: bool = False,
        deadline_unix_s: float | None = None,
    ) -> None:
        raise NotImplementedError

    async def delete(self, session_id: str, owner: str | None) -> None:
        """Delete everywhere: here and in the store (so no replica resumes it)."""
        session = self.registry.find(session_id)
        if session is None:
            try:
                record = await self.store.load(session_id)
            except StoreUnavailable as error:
                raise NotReady("session store unavailable") from error
            if record is None or record.owner != owner:
                raise SessionNotFound(session_id)
        elif session.owner != owner:
            raise SessionNotFound(session_id)
        else:
            self.registry.delete(session)
        self._pending.pop(session_id, None)
        try:
            await self.store.delete(session_id)
        except StoreUnavailable as error:
            raise NotReady("session store unavailable") from error

    async def expire(self, session: Session) -> bool:
        """Local TTL expiry. A persistent store keeps its own TTL (another replica may have
        used the session since), but first gets any state it lacks (False: not yet); the
        memory store's copy goes with the session."""
        if self.persistent and (session.dirty or session.id in self._pending):
            return False  # the next flush stores it; a later sweep expires it here
        self.registry.delete(session)
        if not self.persistent:
            await self.store.delete(session.id)
        return True

    def prune(self) -> None:
        """Forget expired records the memory store holds (Redis expires keys itself)."""
        prune = getattr(self.store, "prune", None)
        if prune is not None:
            prune()

    async def evict_idle(self) -> int:
        """Move the least recently used idle sessions out of the pool; returns how many."""
        limit = self.max_resident
        if not limit or len(self.registry) <= limit:
            return 0
        surplus = len(self.registry) - max(1, int(limit * 0.9))
        idle = [s for s in self.registry if _evictable(s)]
        idle.sort(key=lambda s: s.last_used_at)
        evicted = 0
        for session in idle[:surplus]:
            if session.dirty or session.id in self._pending:
                self._pending.pop(session.id, None)
                try:
                    await self._snapshot_and_save(session)
                except (NotReady, SessionMoved, SessionNotFound) as error:
                    log.warning("could not move session %s out: %s", session.id[:8], error)
                    continue
            if _evictable(session) and not session.dirty:
                self.registry.delete(session)
                evicted += 1
        self.metrics.sessions_evicted.inc(evicted)
        return evicted

    async def flush(self) -> None:
        """Store every state the store lacks (drain hand-off, write-behind, shutdown)."""
        if not self.persistent:
            return
        pending, self._pending = self._pending, {}
        saves = [
            self._save(session, record, epoch)
            for session, record, epoch in pending.values()
            if not session.deleted
        ]
        saves += [
            self._snapshot_and_save(s)
            for s in self.registry
            if s.dirty and s.id not in pending and not s.stale
        ]
        outcomes = await asyncio.gather(*saves, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            log.error(
                "session flush: %d of %d states not stored (%r)",
                len(failures),
                len(outcomes),
                failures[0],
            )
            if any(isinstance(f, NotReady) for f in failures):
                raise NotReady("session store unavailable")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.write_behind_interval_s)
            with contextlib.suppress(NotReady):  # logged; retried at the next flush
                await self.flush()


def _evictable(session: Session) -> bool:
    return not session.streaming and session.inflight == 0 and not session.deleted
