"""Queue work items on the inference worker and await them under their deadline.

The one place where the engine's event-loop side meets the worker's thread: stateless
requests, session feeds and generations all go through ``Submitter``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import torch

from service.engine.deadlines import Deadlines
from service.engine.errors import NotReady, ServeError, Timeout
from service.engine.generation import GenerationStream
from service.engine.history import StateItem
from service.engine.params import FinishReason, GenerationRequest
from service.engine.runner import RowResult
from service.engine.session_cache import CacheRow
from service.engine.sessions import Session
from service.engine.work import DoneEvent, Generation, TokenEvent, WorkItem, WorkKind
from service.engine.worker import InferenceWorker


class Submitter:
    """Builds work items with the request deadline and runs them on the worker."""

    def __init__(self, request_timeout_s: float) -> None:
        self.request_timeout_s = request_timeout_s
        self.worker: InferenceWorker | None = None
        self.accepting = False  # False while loading and once stopping
        self.deadlines = Deadlines()

    def item(
        self,
        kind: WorkKind,
        slot: int,
        ids: list[int],
        *,
        reset: bool = False,
        top_k: int = 0,
        token_logprobs: bool = False,
        session: Session | None = None,
    ) -> StateItem:
        """A work item due by the request deadline (a ``StateItem``: any of them may copy
        or save states)."""
        return StateItem(
            kind,
            slot,
            ids,
            time.monotonic() + self.request_timeout_s,
            future=asyncio.get_running_loop().create_future(),
            session_key=session,
            reset=reset,
            top_k=top_k,
            token_logprobs=token_logprobs,
            cache=_cache_of(session),
        )

    async def run(self, item: WorkItem, while_stopping: bool = False) -> RowResult:
        """Queue ``item`` and await its result (``while_stopping``: also while the engine
        stops, as long as the worker lives — for the final flush of session states)."""
        return await self.wait(item, self.start(item, while_stopping))

    async def wait(self, item: WorkItem, future: asyncio.Future[Any]) -> RowResult:
        """Await ``future`` (``start``'s, of ``item``); a timeout or cancel drops the item."""
        try:
            return await future
        except (Timeout, asyncio.CancelledError):
            self.cancel(item)
            raise

    def start(self, item: WorkItem, while_stopping: bool = False) -> asyncio.Future[Any]:
        """Queue ``item`` under its deadline and return the future of its ``RowResult``,
        without a coroutine: the engine server answers a predict from the future's
        callback. Whoever gives up on the future (a timeout, a cancel) calls ``cancel``."""
        worker = self.live_worker() if while_stopping else self.accepting_worker()
        try:
            worker.submit(item)
        except ServeError:
            item.finish(None)
            raise
        future = item.future
        assert future is not None
        # One shared sweep rather than a timer (or wait_for's two tasks) per request.
        self.deadlines.watch(item.deadline, future, lambda: self._expire(future))
        return future

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(Timeout(f"no result within {self.request_timeout_s}s"))

    def start_generation(
        self,
        stream: GenerationStream,
        slot: int,
        ids: list[int],
        request: GenerationRequest,
        *,
        reset: bool,
        session: Session | None,
    ) -> None:
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed)

        def emit(event: Any) -> None:
            if session is not None and isinstance(event, TokenEvent):
                session.position += 1
                session.version += 1  # the store lacks this state until it is persisted
            stream.emit(event)

        generation = Generation(
            request.sampling,
            generator,
            request.max_tokens,
            request.stop_at_eos,
            keep_state=session is not None,
            emit=emit,
            logprobs=request.logprobs,
        )
        item = WorkItem(
            WorkKind.GENERATE,
            slot,
            ids,
            time.monotonic() + self.request_timeout_s,
            session_key=session,
            reset=reset,
            generation=generation,
            cache=_cache_of(session),
        )
        stream.item = item
        if request.max_tokens == 0:
            stream.emit(DoneEvent(FinishReason.LENGTH))
            return
        self.accepting_worker().submit(item)

    def cancel(self, item: WorkItem) -> None:
        if self.worker is not None:
            self.worker.cancel(item)

    def live_worker(self) -> InferenceWorker:
        if self.worker is None or not self.worker.alive:
            raise NotReady("the inference worker is not running")
        return self.worker

    def accepting_worker(self) -> InferenceWorker:
        if self.worker is None or not self.accepting:
            raise NotReady("the engine is not running")
        if not self.worker.alive:
            raise NotReady("the inference worker died")
        return self.worker


def _cache_of(session: Session | None) -> CacheRow | None:
    """The session's continuous cache, if it keeps one."""
    if session is None or session.cache_slot is None:
        return None
    return CacheRow(session.cache_slot)
