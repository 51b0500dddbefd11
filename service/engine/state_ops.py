"""Recurrent state as a product: fork, rewind, export and import of a session's state.

A session's whole memory is its ``(h, c)``, so these cost a state copy, not a model step:
fork copies the slot (and shares its rewind history's slots), rewind copies a kept
state back (``service.engine.history``), export reads the slot into a signed token
(``service.engine.state_token``) and import writes one into a new session's slot. Each
runs as one work item on the inference thread, which owns the pool's tensors; with a
persistent session store the result is stored before it is answered (acked = stored),
like a feed. Fork and rewind want the session idle (no feed or rewind queued), so that the
state and history they read are the ones the worker will see. A fork that needs nothing
but the copy (no predictions, no continuous cache, no store) skips the work item: the
event loop copies the slot into a settled one (``StatePool.copy_now``).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from service.engine.errors import InvalidRequest, SessionBusy
from service.engine.history import START, HistoryCapture, StateItem
from service.engine.results import Step
from service.engine.runner import RowResult
from service.engine.session_cache import CacheRow
from service.engine.session_change import Change, changed
from service.engine.session_ops import SessionOps
from service.engine.sessions import Session
from service.engine.state_token import ModelShape, StateToken, decode, encode
from service.engine.work import WorkKind

log = logging.getLogger(__name__)


class StateOps:
    """Fork, rewind, export, import; built on ``SessionOps``' registry and submitter."""

    def __init__(self, ops: SessionOps, shape: ModelShape, key: str) -> None:
        self.ops = ops
        self.shape = shape
        self._forks = ops.metrics.session_state_ops.labels("fork")  # looked up once
        if key:
            self.key = key.encode()
        else:
            self.key = secrets.token_bytes(32)
            log.warning(
                "LSTM_SERVE_STATE_KEY is unset: state tokens are signed with a key made at "
                "this start; they will not import after a restart or on another replica"
            )

    async def fork(self, session_id: str, owner: str | None, top_k: int) -> Step:
        """A new session of the same owner with a copy of the state, position and history."""
        ops = self.ops
        source = await ops.open(session_id, owner, verify=True)
        _require_idle(source)
        slot = self._settled_slot(source, top_k)
        try:
            child = ops.registry.create(source.owner, source.cache_slot is not None, slot)
        except BaseException:
            if slot is not None:
                ops.pool.release(slot)
            raise
        ops.metrics.sessions_created.inc()
        child.history = source.history.share(ops.pool.share)
        child.position = source.position
        if slot is not None:  # the copy, here and now: no work item, no step
            ops.pool.copy_now(source.slot, slot)
            changed(child)
            return await self._forked(child, [])
        # Unkeyed: forks of one source share a step. Nothing that changes the source can run
        # before it (the source is idle, later items queue behind it, and a step does its
        # copies before anything else), so it copies the state it was asked for.
        item = self._item(WorkKind.RESTORE, None, child.slot, top_k)
        capture = ops.hold_history(item, child.history.capture([], child.position, None))
        item.copies = [(source.slot, child.slot)]
        if child.cache_slot is not None:
            item.cache = CacheRow(child.cache_slot, copy_from=source.cache_slot)
        try:
            result, _ = await self._run(item, child, lambda: None, None, capture)
        except BaseException:
            ops.registry.delete(child)
            raise
        return await self._forked(child, result.top)

    def _settled_slot(self, source: Session, top_k: int) -> int | None:
        """A slot to fork ``source`` into on the event loop, when the fork needs nothing
        but the copy: no predictions, no continuous cache, no store to write first."""
        pool = self.ops.pool
        if top_k or source.cache_slot is not None or self.ops.durable.persistent:
            return None
        return pool.allocate_settled() if pool.copies_now else None

    async def _forked(self, child: Session, top: list[tuple[int, float]]) -> Step:
        ops = self.ops
        self._forks.inc()
        ops._update_gauge()
        await ops.durable.evict_idle()
        return Step(child.id, child.position, 0.0, top)

    async def rewind(self, session_id: str, owner: str | None, tokens: int, top_k: int) -> Step:
        """Undo the last ``tokens`` words: the state kept from before them, copied back
        (plus a short re-feed when the target lies inside one longer feed)."""
        ops = self.ops
        session = await ops.open(session_id, owner, verify=True)
        _require_idle(session)
        limit = ops.config.session_history
        kept = session.history.kept(session.position, limit)
        if tokens > kept:
            raise InvalidRequest(
                f"cannot rewind {tokens} tokens: this session keeps the last {kept} "
                f"(LSTM_SERVE_SESSION_HISTORY={limit})",
                {"kept_tokens": kept},
            )
        target = session.position - tokens
        item = self._item(WorkKind.FEED, session, session.slot, top_k)
        if tokens:
            slot, item.tokens = session.history.plan(target)
            if slot == START:
                item.reset = True
            else:
                item.copies = [(slot, session.slot)]
            if item.cache is not None:  # the pairs of the undone words leave the window
                item.cache.rewind_to = target - len(item.tokens)
        capture = ops.hold_history(item, session.history.capture_rewound(target))

        def apply() -> None:
            if tokens:
                session.history.truncate(target, ops.pool.release)
            session.position = target

        result, change = await self._run(item, session, apply, session, capture)
        ops.metrics.session_state_ops.labels("rewind").inc()
        return Step(session.id, change.position, 0.0, result.top)

    async def export(self, session_id: str, owner: str | None) -> tuple[str, int]:
        """(signed token, position) of the caller's session."""
        ops = self.ops
        session = await ops.open(session_id, owner, verify=True)
        result, change = await ops.state_item(session, None)
        assert result.state is not None
        token = StateToken(change.position, *result.state)
        ops.metrics.session_state_ops.labels("export").inc()
        return encode(self.key, self.shape, token), change.position

    async def restore(self, text: str, owner: str | None, top_k: int) -> Step:
        """A new live session from a token (checked before anything is allocated)."""
        token = decode(self.key, self.shape, text)
        ops = self.ops
        ops.submitter.accepting_worker()
        session = ops.registry.create(owner, cached=bool(token.cache) or ops.config.session_cache)
        ops.metrics.sessions_created.inc()
        session.position = token.position
        item = self._item(WorkKind.RESTORE, session, session.slot, top_k)
        item.restore = (token.h, token.c, token.cache)
        try:
            result, change = await self._run(item, session, lambda: None, session, None)
        except BaseException:
            ops.registry.delete(session)
            raise
        ops.metrics.session_state_ops.labels("import").inc()
        await ops.durable.evict_idle()
        return Step(session.id, change.position, 0.0, result.top)

    # ---- plumbing --------------------------------------------------------------------
    def _item(self, kind: WorkKind, key: Session | None, slot: int, top_k: int) -> StateItem:
        item = self.ops.submitter.item(kind, slot, [], top_k=top_k, session=key)
        item.capture_state = self.ops.durable.persistent
        return item

    async def _run(
        self,
        item: StateItem,
        session: Session,
        apply: Any,
        key: Session | None,
        capture: HistoryCapture | None,
    ) -> tuple[RowResult, Change]:
        """Run ``item`` (serialised with ``key``'s work); ``apply`` the bookkeeping when it
        succeeded; store ``session``'s new state (and ``capture``d history) before
        answering."""
        ops = self.ops
        changes: list[Change] = []

        def finish(outcome: Any) -> None:
            if isinstance(outcome, RowResult):
                apply()
                stored = capture.stored(outcome.extra_state) if capture else None
                changes.append(changed(session, stored))
            if item.capture_extra is not None:
                ops.pool.release(item.capture_extra)
            if key is not None:
                ops.registry.end(key)

        item.on_finish = finish
        if key is not None:
            ops.registry.begin(key)
        result = await ops.submitter.run(item)
        await ops.durable.commit(session, changes[0], result.state)
        ops._update_gauge()
        return result, changes[0]


def _require_idle(session: Session) -> None:
    if session.inflight:
        raise SessionBusy(f"session {session.id!r} has work queued; fork or rewind after it")
