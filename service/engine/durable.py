"""Sessions that survive: the glue between the session registry and a ``SessionStore``.

- **Durability.** After a feed (or reset, or a session generation) the worker hands back
  the slot's new (h, c) as bytes; in ``sync`` mode the feed is answered only after
  ``store.save`` returned, so an acknowledged feed is never lost. In ``write-behind`` mode
  the record is queued and a flusher writes the newest record of every session each
  ``write_behind_interval_s``: a crash loses at most that much acknowledged work.
- **Resume anywhere.** A session id unknown here is loaded from the store, checked
  (model checksum, state shape) and written into a fresh slot by the worker.
- **Never silently wrong.** A failed save marks the local copy ``stale`` (its slot may hold
  a state the client was never told about) and the next use reloads it from the store; a
  save over a newer state (the session moved to another replica) is refused by the store's
  compare-and-set and retried from the stored state.
- **Tiering.** Past ``max_resident_sessions``, the least recently used idle sessions leave
  the state pool (stored first if the store lacks their newest state) and come back on use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from service.engine.errors import NotReady, SessionIncompatible, SessionNotFound
from service.engine.history import START, StoredHistory
from service.engine.metrics import EngineMetrics
from service.engine.rows import RowResult, SlotState
from service.engine.session_change import Change
from service.engine.session_upkeep import SessionMoved, SessionUpkeep
from service.engine.sessions import Session, SessionRegistry
from service.engine.store import SessionRecord, SessionStore, StoreConflict, StoreUnavailable

log = logging.getLogger(__name__)
__all__ = ["Change", "DurableSessions", "SessionMoved"]
Durability = Literal["sync", "write-behind"]
# (session, restore bytes or None for a snapshot, other slots to write) -> the worker's
# RowResult and the session's (version, position, epoch) when the worker ran it.
StateItem = Callable[
    [Session, "SlotState | None", "list[tuple[int, bytes, bytes]] | None"],
    Awaitable["tuple[RowResult, Change]"],
]


class DurableSessions(SessionUpkeep):
    def __init__(
        self,
        store: SessionStore,
        registry: SessionRegistry,
        metrics: EngineMetrics,
        model_sha256: str,
        shape: tuple[int, int],
        run_state_item: StateItem,
        *,
        durability: Durability = "sync",
        write_behind_interval_s: float = 0.05,
        max_resident: int = 0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.model_sha256 = model_sha256
        self.shape = shape
        self.run_state_item = run_state_item
        self.durability = durability
        self.write_behind_interval_s = write_behind_interval_s
        self.max_resident = max_resident
        self._pending: dict[str, tuple[Session, SessionRecord, int]] = {}  # id -> + epoch
        self._loading: dict[str, asyncio.Task[Session]] = {}
        self._flusher: asyncio.Task[None] | None = None

    @property
    def persistent(self) -> bool:
        """Worth storing every change (the store outlives this process)."""
        return self.store.persistent

    @property
    def resumable(self) -> bool:
        """Sessions may be reloaded from the store (persistent, or tiering is on)."""
        return self.persistent or self.max_resident > 0

    def start(self) -> None:
        if self.persistent and self.durability == "write-behind":
            self._flusher = asyncio.create_task(self._flush_loop(), name="session-flusher")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(NotReady):
            await self.flush()
        await self.store.close()

    # ---- changes ---------------------------------------------------------------------
    @property
    def acks_at_once(self) -> bool:
        """A feed may be answered without waiting for the store (none, or write-behind):
        ``queue_change`` then does all of ``commit``."""
        return not self.persistent or self.durability == "write-behind"

    async def commit(
        self,
        session: Session,
        change: Change,
        state: SlotState | None,
        deadline_unix_s: float | None = None,
    ) -> None:
        """Make ``change`` durable before its feed is acknowledged (or queue it)."""
        record = self.queue_change(session, change, state)
        if record is not None:
            await self._save(session, record, change.epoch, True, deadline_unix_s)

    def queue_change(
        self, session: Session, change: Change, state: SlotState | None
    ) -> SessionRecord | None:
        """``commit`` up to its wait: check that the copy is current and, with
        write-behind, queue the record. Returns the record ``sync`` must save first."""
        if not self.persistent or state is None:
            return None
        if session.epoch != change.epoch or session.stale:
            raise SessionMoved("the copy this feed ran on is being reloaded")
        record = self._record(session, change, state)
        if self.durability == "write-behind":
            self._pending[session.id] = (session, record, change.epoch)
            return None
        return record

    async def persist(self, session: Session) -> None:
        """Store ``session``'s current state if the store lacks it (e.g. after a generation)."""
        if not self.persistent or not session.dirty or session.deleted or session.stale:
            return
        if self.durability == "sync":  # write-behind: the next flush snapshots it
            await self._snapshot_and_save(session)

    async def _snapshot_and_save(self, session: Session) -> None:
        result, change = await self.run_state_item(session, None, None)
        assert result.state is not None
        await self._save(session, self._record(session, change, result.state), change.epoch)

    def _record(self, session: Session, change: Change, state: SlotState) -> SessionRecord:
        return SessionRecord(
            session.id,
            session.owner,
            change.position,
            session.created_at,
            session.last_used_at,
            self.registry.ttl_s,
            self.model_sha256,
            change.version,
            state[0],
            state[1],
            shape=self.shape,
            cache=state[2],
            **(change.history.record_fields() if change.history else {}),
        )

    async def _save(
        self,
        session: Session,
        record: SessionRecord,
        epoch: int,
        acknowledging: bool = False,
        deadline_unix_s: float | None = None,
    ) -> None:
        """Store ``record`` (made from the copy of ``epoch``). ``acknowledging``: a feed
        waits for it, so a state that cannot be stored any more is an error, not a skip."""
        if session.save_lock is None:
            session.save_lock = asyncio.Lock()
        async with session.save_lock:  # saves of one session in order, one at a time
            if session.stale or session.epoch != epoch:  # reloaded while this one waited
                if acknowledging:
                    raise SessionMoved("the copy this feed ran on is being reloaded")
                return
            if session.stored_version >= record.version:
                return  # a newer state of this same copy is stored already
            started = time.perf_counter()
            try:
                await self.store.save(record, session.stored_version, deadline_unix_s)
            except StoreConflict as error:
                self.metrics.session_store_errors.labels("conflict").inc()
                self._mark_stale(session)
                raise SessionMoved(str(error)) from error
            except asyncio.CancelledError:  # the request's deadline: outcome unknown here
                if acknowledging:
                    self._mark_stale(session)  # reload the stored state at the next use
                raise
            except StoreUnavailable as error:
                self.metrics.session_store_errors.labels("unavailable").inc()
                log.warning("session store: %s", error)
                if self.durability == "sync":
                    self._mark_stale(session)  # the slot holds an unacknowledged state
                else:  # acknowledged already: keep it and try again at the next flush
                    self._pending.setdefault(session.id, (session, record, epoch))
                raise NotReady("session store unavailable") from error
            self.metrics.session_store_latency.observe(time.perf_counter() - started)
            session.stored_version = record.version

    @staticmethod
    def _mark_stale(session: Session) -> None:
        session.stale = True
        session.epoch += 1

    # ---- resume ----------------------------------------------------------------------
    async def resolve(self, session_id: str, owner: str | None, verify: bool = False) -> Session:
        """The caller's session: the local copy, else (re)loaded from the store.

        ``verify`` (a stream attaching, a position read) first checks that the store holds
        no newer state than the local copy (the session was served elsewhere meanwhile);
        a feed needs no check: its save is a compare-and-set."""
        session = self.registry.find(session_id)
        if session is not None and verify and self.persistent and not session.stale:
            await self._verify(session)
        if session is None or session.stale:
            task = self._loading.get(session_id)
            if task is None:
                task = asyncio.create_task(self._load(session_id, session))
                self._loading[session_id] = task
                task.add_done_callback(lambda _: self._loading.pop(session_id, None))
            session = await asyncio.shield(task)
        if session.owner != owner:
            raise SessionNotFound(session_id)
        return session

    async def _verify(self, session: Session) -> None:
        try:
            stored = await self.store.version(session.id)
        except StoreUnavailable as error:
            self.metrics.session_store_errors.labels("unavailable").inc()
            raise NotReady("session store unavailable") from error
        if (stored or 0) != session.stored_version and session.inflight == 0:
            self._mark_stale(session)

    def _history_slot(
        self, record: SessionRecord
    ) -> tuple[int, list[tuple[int, bytes, bytes]] | None]:
        """The slot for a stored history's oldest state, and the write that fills it."""
        if record.history_base < 0 or not record.history_h:
            return START, None
        slot = self.registry.pool.allocate()
        return slot, [(slot, record.history_h, record.history_c)]

    async def _load(self, session_id: str, local: Session | None) -> Session:
        try:
            record = await self.store.load(session_id)
        except StoreUnavailable as error:
            self.metrics.session_store_errors.labels("unavailable").inc()
            raise NotReady("session store unavailable") from error
        if record is None:
            if local is not None:
                self.registry.delete(local)
            raise SessionNotFound(session_id)
        if record.model_sha256 != self.model_sha256 or tuple(record.shape) != self.shape:
            raise SessionIncompatible(
                f"session {session_id!r} was made by another model "
                f"(weights sha256 {record.model_sha256[:12]}…, state {list(record.shape)})"
            )
        self._pending.pop(session_id, None)  # queued states of the stale copy, if any
        if local is None:
            session = self.registry.adopt(
                session_id,
                record.owner,
                record.created_at,
                record.last_used_at,
                record.position,
                record.version,
                cached=bool(record.cache),
            )
        else:
            session = local
            session.position, session.owner = record.position, record.owner
            session.version = session.stored_version = record.version
            session.history.clear(self.registry.pool.release)  # states the store never had
        slot, writes = self._history_slot(record)
        try:
            await self.run_state_item(session, (record.h, record.c, record.cache), writes)
        except BaseException:
            if writes:
                self.registry.pool.release(slot)
            if local is None:
                self.registry.delete(session)
            raise
        if record.history_base >= 0:
            session.history = StoredHistory(record.history_base, record.history_tokens).restored(
                slot
            )
        session.stale = False
        session.last_used_at = time.time()  # in use now: the last to leave the pool
        self.metrics.sessions_resumed.inc()
        if local is None:
            await self.evict_idle()
        return session
