"""Requests answered from their work item's future, without a task each: the hot paths.

A predict, and a feed of a session held here (``SessionOps.start_feed``), waits for
nothing but its work item, whose own deadline ends it. A task per request (the engine
server's ``_run``) and its backstop deadline were ~10 % of the engine loop's time under
HTTP predict load (py-spy, BENCHMARKS §0.6), and a third of its time per WebSocket feed
(§0.7). Cancel and timeout go through the item, as the worker drops it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from service.engine import server_values as values
from service.engine import wire
from service.engine.core import Engine
from service.engine.errors import ServeError, Timeout
from service.engine.session_upkeep import SessionMoved
from service.engine.work import WorkItem

log = logging.getLogger(__name__)
Key = tuple[bytes, int]  # (API process identity, request id)
Reply = Callable[[bytes, wire.Reply], None]
Answer = Callable[[Any], Any]  # the worker's RowResult -> the wire value of the answer


class ItemCalls:
    """The predicts and feeds in flight; ``reply`` sends an answer, ``fallback`` runs a
    request the long way (a task), for a feed whose session moved meanwhile."""

    def __init__(self, engine: Engine, reply: Reply, fallback: Callable[[bytes, Any], None]):
        self.engine = engine
        self._reply = reply
        self._fallback = fallback
        self.waiting: dict[Key, WorkItem] = {}

    def start_predict(self, identity: bytes, request: wire.Predict) -> None:
        try:
            item = self.engine.predict_item(request.ids, request.top_k)
            future = self.engine.submitter.start(item)
        except ServeError as error:
            self._reply(identity, values.failure(request.rid, error))
            return
        self._await(identity, request, item, future, lambda result: values.top(result.top))

    def start_feed(self, identity: bytes, request: wire.Feed) -> bool:
        """Queue a feed of a session held here; False: the feed must wait for the session
        store (or load the session from it) and needs a task."""
        try:
            ops = self.engine.ops()
            call = ops.start_feed(request.session_id, request.ids, request.top_k, request.owner)
        except ServeError as error:
            self._reply(identity, values.failure(request.rid, error))
            return True
        if call is None:
            return False

        def answer(result: Any) -> Any:
            return values.step(ops.answer(call, result))

        self._await(identity, request, call.item, call.future, answer)
        return True

    def cancel(self, key: Key) -> bool:
        """Cancel the call of ``key`` if it is one of these (the worker fails its item)."""
        item = self.waiting.get(key)
        if item is None:
            return False
        self.engine.submitter.cancel(item)
        return True

    def futures(self) -> Iterator[asyncio.Future[Any]]:
        return (item.future for item in self.waiting.values() if item.future is not None)

    def _await(
        self,
        identity: bytes,
        request: Any,
        item: WorkItem,
        future: asyncio.Future[Any],
        answer: Answer,
    ) -> None:
        key = (identity, request.rid)
        self.waiting[key] = item
        future.add_done_callback(lambda done: self._done(key, request, item, done, answer))

    def _done(
        self, key: Key, request: Any, item: WorkItem, future: asyncio.Future[Any], answer: Answer
    ) -> None:
        self.waiting.pop(key, None)
        identity, rid = key
        if future.cancelled():
            self._reply(identity, wire.Failure(rid, "cancelled", "cancelled"))
            return
        error = future.exception()
        if error is None:
            try:
                self._reply(identity, wire.Result(rid, answer(future.result())))
                return
            except SessionMoved:  # another replica stored a newer state meanwhile
                self._fallback(identity, request)  # reloads the session, feeds it again
                return
            except Exception as failed:
                error = failed
        if isinstance(error, Timeout):
            self.engine.submitter.cancel(item)  # drop it from the queue, if still there
        if isinstance(error, ServeError):
            self._reply(identity, values.failure(rid, error))
            return
        log.error("engine call %s failed", type(request).__name__, exc_info=error)
        self._reply(identity, wire.Failure(rid, "internal", "internal error"))
