"""A running generation as seen by a caller: prompt tokens, words as they come, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from models.vocabulary import Vocabulary
from service.errors import ServeError
from service.results import GeneratedWord, join_words
from service.work import DoneEvent, FinishReason, GenerationEvent, TokenEvent, WorkItem


class GenerationStream:
    """Iterate for ``GeneratedWord``s; afterwards ``finish_reason`` and ``text`` are set.

    Leaving the iteration early (client gone) cancels the generation in the worker.
    """

    def __init__(
        self,
        prompt_tokens: list[str],
        vocabulary: Vocabulary,
        cancel: Callable[[WorkItem], None],
        start_position: int | None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.words: list[str] = []
        self.finish_reason: FinishReason | None = None
        self.item: WorkItem | None = None
        self._vocabulary = vocabulary
        self._cancel = cancel
        self._start_position = start_position
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self._on_done: list[Callable[[], None]] = []

    @property
    def text(self) -> str:
        return join_words(self.words)

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

    async def __aiter__(self) -> AsyncIterator[GeneratedWord]:
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, TokenEvent):
                    word = self._vocabulary.word(event.token_id)
                    self.words.append(word)
                    start = self._start_position
                    position = None if start is None else start + event.index + 1
                    yield GeneratedWord(word, event.index, position)
                    continue
                if event.reason is FinishReason.ERROR:
                    error = event.error
                    raise error if isinstance(error, ServeError) else ServeError(str(error))
                self.finish_reason = event.reason
                return
        finally:
            if self.finish_reason is None:
                self.cancel()

    async def collect(self) -> list[GeneratedWord]:
        return [word async for word in self]
