"""A running generation as the engine's event loop sees it: word ids as they come, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from service.engine.errors import ServeError
from service.engine.work import DoneEvent, FinishReason, GenerationEvent, TokenEvent, WorkItem


@dataclass(frozen=True)
class GeneratedToken:
    token_id: int
    index: int  # 0-based among generated words
    logprob: float | None = None  # only when the request asked for log-probs
    top: list[tuple[int, float]] | None = None


class GenerationStream:
    """Iterate for ``GeneratedToken``s; afterwards ``finish_reason`` is set.

    ``before_done`` (a session's generation: store the new state) is awaited before the
    iteration ends, so "done" is only said of a stored state. Leaving the iteration early
    (client gone) cancels the generation in the worker.
    """

    def __init__(self, cancel: Callable[[WorkItem], None]) -> None:
        self.finish_reason: FinishReason | None = None
        self.item: WorkItem | None = None
        self.before_done: Callable[[], Awaitable[None]] | None = None
        self._cancel = cancel
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self._on_done: list[Callable[[], None]] = []

    def on_done(self, callback: Callable[[], None]) -> None:
        self._on_done.append(callback)

    def emit(self, event: GenerationEvent) -> None:
        """Called on the event loop by the worker's deliveries."""
        if isinstance(event, DoneEvent):
            for callback in self._on_done:
                callback()
            self._on_done.clear()
        self._events.put_nowait(event)

    def cancel(self) -> None:
        if self.item is not None and self.finish_reason is None:
            self._cancel(self.item)

    async def __aiter__(self) -> AsyncIterator[GeneratedToken]:
        reason: FinishReason | None = None
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, TokenEvent):
                    yield GeneratedToken(event.token_id, event.index, event.logprob, event.top)
                    continue
                if event.reason is FinishReason.ERROR:
                    error = event.error
                    raise error if isinstance(error, ServeError) else ServeError(str(error))
                reason = event.reason
                break
            if self.before_done is not None:
                await self.before_done()
            self.finish_reason = reason
        finally:
            if reason is None:
                self.cancel()
