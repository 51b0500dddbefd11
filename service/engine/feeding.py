"""A session feed queued on the worker, and what its result does to the session.

Split from ``SessionOps`` so that one feed has one body whichever way it is awaited: a
coroutine (``SessionOps.feed``, which may wait for the session store before and after the
step) or the engine server's future callback (``SessionOps.start_feed``, the common case
of a session held here whose change needs no store round trip), as a predict is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.engine.durable import DurableSessions
from service.engine.history import START, HistoryCapture, StateItem
from service.engine.results import Step
from service.engine.rows import RowResult
from service.engine.session_change import Change, changed
from service.engine.sessions import Session, SessionRegistry
from service.engine.state_pool import StatePool
from service.engine.submit import Submitter
from service.engine.work import WorkKind

if TYPE_CHECKING:
    from service.engine.core import EngineConfig

Capture = HistoryCapture | None  # what of a rewind history a save stores


@dataclass(eq=False)
class FeedCall:
    """A queued feed: ``future`` gets the worker's ``RowResult`` (or its error); by then
    the session has moved on and ``change`` says to where."""

    session: Session
    item: StateItem
    future: asyncio.Future[Any]
    changes: list[Change] = field(default_factory=list)  # set when the step applied

    @property
    def change(self) -> Change:
        return self.changes[0]

    def step(self, result: RowResult) -> Step:
        # change.position, not session.position: later feeds may have run meanwhile
        position = self.change.position
        return Step(self.session.id, position, sum(result.token_logprobs), result.top)


class Feeds:
    """Builds and queues feed items, with the session's rewind history and store change."""

    def __init__(
        self,
        registry: SessionRegistry,
        durable: DurableSessions,
        submitter: Submitter,
        pool: StatePool,
        config: EngineConfig,
    ) -> None:
        self.registry = registry
        self.durable = durable
        self.submitter = submitter
        self.pool = pool
        self.config = config

    def begin(self, session: Session, ids: list[int], top_k: int, reset: bool) -> FeedCall:
        """Queue ``ids`` for ``session`` (``reset``: from the initial state); raises at
        once when the worker refuses it (``Overloaded``), with nothing left held."""
        item = self.submitter.item(
            WorkKind.RESET if reset and not ids else WorkKind.FEED,
            session.slot,
            ids,
            reset=reset,
            top_k=top_k,
            token_logprobs=bool(ids),
            session=session,
        )
        limit, release = self.config.session_history, self.pool.release
        save_to = self.pool.allocate() if limit > 0 and ids and not reset else None
        item.save_to = save_to
        item.capture_state = self.durable.persistent
        capture = self.history_capture(item, session, ids, reset, save_to)
        changes: list[Change] = []
        registry = self.registry

        def finish(outcome: Any) -> None:
            if isinstance(outcome, RowResult):
                if reset:  # (a deleted session frees its history in ``end`` below)
                    session.history.restart(ids, limit, release)
                elif save_to is not None:
                    session.history.record(session.position, save_to, ids, limit, release)
                session.position = len(ids) if reset else session.position + len(ids)
                stored = capture.stored(outcome.extra_state) if capture else None
                changes.append(changed(session, stored))
            elif save_to is not None:
                release(save_to)
            if item.capture_extra is not None:
                release(item.capture_extra)
            registry.end(session)

        item.on_finish = finish
        registry.begin(session)
        future = self.submitter.start(item)
        return FeedCall(session, item, future, changes)

    def history_capture(
        self,
        item: StateItem,
        session: Session,
        ids: list[int],
        reset: bool,
        save_to: int | None,
    ) -> Capture:
        """What of the session's rewind history its save stores (with a session store);
        the state it reads is held (``share``) until the step has read it."""
        if not self.durable.persistent or self.config.session_history <= 0:
            return None
        if reset:
            return HistoryCapture(0, START, list(ids))
        return self.hold_history(item, session.history.capture(ids, session.position, save_to))

    def hold_history(self, item: StateItem, capture: Capture) -> Capture:
        """``capture``, read by ``item``'s step when there is a session store."""
        if self.durable.persistent and capture is not None:
            capture.hold(item, self.pool.share)
        return capture
