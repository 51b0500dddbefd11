"""Session calls of the engine: create, feed, reset, describe, delete, streams, generation.

Every session lives here, in the engine process, so any API process serves any session,
and "one live stream per session" is one flag on the session. A feed's answer carries
the position right after its own words; with a persistent store it is answered only
once its state is stored (``service.engine.durable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from service.engine.durable import DurableSessions, SessionMoved
from service.engine.errors import ServeError, SessionBusy, SessionNotFound
from service.engine.feeding import Capture, FeedCall, Feeds
from service.engine.generation import GenerationStream
from service.engine.history import StateItem
from service.engine.metrics import EngineMetrics
from service.engine.results import SessionInfo, Step
from service.engine.rows import RowResult, SlotState
from service.engine.session_change import Change
from service.engine.session_sweep import sweep_sessions
from service.engine.sessions import Session, SessionRegistry
from service.engine.state_pool import StatePool
from service.engine.store_watch import StoreWatch
from service.engine.submit import GenerationRequest, Submitter
from service.engine.work import WorkKind

if TYPE_CHECKING:
    from service.engine.core import EngineConfig

log = logging.getLogger(__name__)
RELOAD_TRIES = 3  # feeds of a session that moved meanwhile


class SessionOps:
    def __init__(
        self,
        registry: SessionRegistry,
        durable: DurableSessions,
        submitter: Submitter,
        pool: StatePool,
        metrics: EngineMetrics,
        config: EngineConfig,
    ) -> None:
        self.registry = registry
        self.durable = durable
        self.submitter = submitter
        self.pool = pool
        self.metrics = metrics
        self.config = config
        self.store_watch = StoreWatch(durable.store)
        self.feeds = Feeds(registry, durable, submitter, pool, config)
        self._shown = (-1, -1)  # (live, cached) sessions last written to the gauges
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._sweep(), name="session-sweeper"))
        if self.durable.persistent:
            self._tasks.append(asyncio.create_task(self.store_watch.run(), name="store-check"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def store_healthy(self) -> bool:
        return self.store_watch.healthy

    # ---- calls -----------------------------------------------------------------------
    async def create(
        self, ids: list[int], top_k: int, owner: str | None, cache: bool | None = None
    ) -> Step:
        """A new session fed ``ids``; ``cache``: keep a continuous cache (None: the server's
        ``session_cache`` setting)."""
        self.submitter.accepting_worker()
        session = self.registry.create(owner, self.config.session_cache if cache is None else cache)
        self.metrics.sessions_created.inc()
        self._update_gauge()
        try:
            step = await self._feed(session, ids, top_k, reset=True)
        except BaseException:
            self.registry.delete(session)
            self._update_gauge()
            raise
        await self.durable.evict_idle()
        return step

    async def feed(self, session_id: str, ids: list[int], top_k: int, owner: str | None) -> Step:
        session = await self.open(session_id, owner)
        return await self._feed_retrying(session, ids, top_k, reset=False)

    async def reset(self, session_id: str, owner: str | None) -> SessionInfo:
        session = await self.open(session_id, owner)
        step = await self._feed_retrying(session, [], 0, reset=True)
        return self.info(session, step.position)

    async def describe(self, session_id: str, owner: str | None) -> SessionInfo:
        """Position and timestamps of the caller's session, held here or in the store."""
        return self.info(await self.open(session_id, owner, verify=True))

    async def remove(self, session_id: str, owner: str | None) -> None:
        """Delete a session here and in the session store."""
        self.submitter.accepting_worker()
        await self.durable.delete(session_id, owner)
        self._update_gauge()

    async def attach(
        self, session_id: str | None, owner: str | None, cache: bool | None = None
    ) -> SessionInfo:
        """Open a stream: a new session (``None``, with a cache if ``cache``) or the
        caller's, held by no other stream."""
        if session_id is None:
            session_id = (await self.create([], 0, owner, cache)).session_id
        session = await self.open(session_id, owner, verify=True)  # or from the store
        if session.deleted:  # left the state pool between its lookup and now: load it again
            session = await self.open(session_id, owner)
        self.registry.attach(session)
        return self.info(session)

    def detach(self, session_id: str) -> None:
        session = self.registry.find(session_id)
        if session is not None:
            self.registry.detach(session)

    async def generate(
        self, session_id: str, owner: str | None, request: GenerationRequest
    ) -> tuple[GenerationStream, Session]:
        """Continue the session with generated words; they become part of its history and
        are stored before the stream ends."""
        session = await self.open(session_id, owner)  # reloads a stale copy in place
        session.history.clear(self.pool.release)  # generated words keep no rewind states
        stream = GenerationStream(self.submitter.cancel)
        self.registry.begin(session)
        stream.on_done(lambda: self.registry.end(session))
        stream.before_done = lambda: self.durable.persist(session)
        try:
            self.submitter.start_generation(
                stream, session.slot, [], request, reset=False, session=session
            )
        except ServeError:
            self.registry.end(session)
            raise
        return stream, session

    async def open(self, session_id: str, owner: str | None, verify: bool = False) -> Session:
        """The caller's session: held here, or resumed from the session store (``verify``:
        reload it if another replica stored a newer state meanwhile)."""
        self.submitter.accepting_worker()
        session = await self.durable.resolve(session_id, owner, verify)
        if self.registry.is_expired(session):
            self.registry.delete(session)
            self._update_gauge()
            raise SessionNotFound(session_id)
        self._update_gauge()
        return session

    def info(self, session: Session, position: int | None = None) -> SessionInfo:
        """``position``: the one right after the caller's own step, if it had one."""
        return SessionInfo(
            session.id,
            session.position if position is None else position,
            session.created_at,
            session.last_used_at,
            self.registry.expires_at(session),
        )

    # ---- feeds -----------------------------------------------------------------------
    async def _feed_retrying(
        self, session: Session, ids: list[int], top_k: int, reset: bool
    ) -> Step:
        """``_feed``; when another replica moved the session on (or it left the pool between
        its lookup and this feed), reload it and feed again."""
        for _ in range(RELOAD_TRIES):
            try:
                return await self._feed(session, ids, top_k, reset)
            except SessionMoved:
                session = await self.open(session.id, session.owner)
        raise SessionBusy(f"session {session.id!r} is being fed by another replica")

    async def _feed(self, session: Session, ids: list[int], top_k: int, reset: bool) -> Step:
        if session.deleted and self.durable.resumable:
            raise SessionMoved("left the state pool")  # evicted after its lookup: reload
        call = self.feeds.begin(session, ids, top_k, reset)
        result = await self.submitter.wait(call.item, call.future)
        # The save is fenced at the request's deadline (an error answer means not applied).
        deadline_unix_s = time.time() + max(0.0, call.item.deadline - time.monotonic())
        await self.durable.commit(session, call.change, result.state, deadline_unix_s)
        return call.step(result)

    def start_feed(
        self, session_id: str, ids: list[int], top_k: int, owner: str | None
    ) -> FeedCall | None:
        """``feed`` without a coroutine where nothing waits for the session store: the
        session is held here and current, and its change is acknowledged at once
        (``DurableSessions.acks_at_once``). ``None``: call ``feed``. Once ``call.future``
        has its result, ``answer`` gives the ``Step`` (or raises ``SessionMoved``: then
        ``feed`` reloads the session and feeds it again)."""
        self.submitter.accepting_worker()
        if not self.durable.acks_at_once:
            return None
        session = self.registry.find(session_id)
        if session is None or session.stale or session.deleted:
            return None
        if session.owner != owner:
            raise SessionNotFound(session_id)
        if self.registry.is_expired(session):
            return None  # ``feed`` deletes it and says so
        return self.feeds.begin(session, ids, top_k, reset=False)

    def answer(self, call: FeedCall, result: RowResult) -> Step:
        """The answer of a ``start_feed`` call whose item succeeded."""
        self.durable.queue_change(call.session, call.change, result.state)
        return call.step(result)

    def hold_history(self, item: StateItem, capture: Capture) -> Capture:
        """``capture``, read by ``item``'s step when there is a session store."""
        return self.feeds.hold_history(item, capture)

    async def state_item(
        self,
        session: Session,
        restore: SlotState | None,
        writes: list[tuple[int, bytes, bytes]] | None = None,
    ) -> tuple[RowResult, Change]:
        """Write ``restore`` into the session's slot (and ``writes`` into theirs), or (None)
        read the slot's state and the history's oldest one, to store them."""
        kind = WorkKind.RESTORE if restore else WorkKind.SNAPSHOT
        item = self.submitter.item(kind, session.slot, [], session=session)
        item.writes = writes
        item.restore, item.capture_state = restore, restore is None
        capture = None if restore else self.feeds.history_capture(item, session, [], False, None)
        changes: list[Change] = []

        def finish(outcome: Any) -> None:
            extra = outcome.extra_state if isinstance(outcome, RowResult) else None
            stored = capture.stored(extra) if capture else None
            changes.append(Change(session.version, session.position, session.epoch, stored))
            if item.capture_extra is not None:
                self.pool.release(item.capture_extra)
            self.registry.end(session)

        item.on_finish = finish
        self.registry.begin(session)
        result = await self.submitter.run(item, while_stopping=True)
        return result, changes[0]

    # ---- housekeeping ----------------------------------------------------------------
    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.session_sweep_interval_s)
            swept = await sweep_sessions(self.registry, self.durable.expire)
            self.metrics.sessions_expired.inc(swept.expired)
            self.durable.prune()
            self._update_gauge()
            self.metrics.session_history_bytes.set(swept.history_slots * self.pool.bytes_per_slot)

    def _update_gauge(self) -> None:
        """Session gauges, written only when they changed (called on every session call;
        a multiprocess gauge write costs a few microseconds)."""
        caches = self.registry.caches
        shown = (len(self.registry), caches.in_use if caches is not None else 0)
        if shown == self._shown:
            return
        self._shown = shown
        self.metrics.sessions_live.set(shown[0])
        if caches is not None:
            self.metrics.sessions_cached.set(shown[1])
            self.metrics.session_cache_bytes.set(caches.bytes_in_use)
