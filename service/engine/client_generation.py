"""``Generation``: a running generation as an API process sees it, streamed word by word.

Words arrive as ``wire.Token`` replies on the generation's own queue (``EngineClient``
routes them); leaving the iteration early cancels the generation in the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from models.detokenize import detokenize
from service.engine import errors, wire
from service.engine.params import FinishReason
from service.engine.results import GeneratedWord

if TYPE_CHECKING:
    from service.engine.client import EngineClient


class Generation:
    """A running generation: iterate for ``GeneratedWord``s; afterwards ``finish_reason``
    (a ``FinishReason``), ``text`` and, for a session, its ``position`` are set. Leaving the
    iteration early cancels the generation in the engine."""

    def __init__(
        self, client: EngineClient, rid: int, queue: asyncio.Queue[wire.Reply], prompt: list[str]
    ) -> None:
        self.prompt_tokens = prompt
        self.words: list[str] = []
        self.finish_reason: FinishReason | None = None
        self.position: int | None = None
        self._client = client
        self._rid = rid
        self._queue = queue

    @property
    def text(self) -> str:
        return detokenize(self.words)  # for display; ``words`` stay the model's words

    def cancel(self) -> None:
        if self.finish_reason is None:
            self._client.channel.send(wire.Cancel(self._rid))

    async def __aiter__(self) -> AsyncIterator[GeneratedWord]:
        try:
            while True:
                reply = await self._queue.get()
                if isinstance(reply, wire.Token):
                    word = self._client.word(reply.token_id)
                    self.words.append(word)
                    top = None if reply.top is None else self._client._words(reply.top)
                    yield GeneratedWord(word, reply.index, reply.position, reply.logprob, top)
                elif isinstance(reply, wire.Done):
                    self.position = reply.position
                    self.finish_reason = FinishReason(reply.reason)
                    return
                elif isinstance(reply, wire.Failure):
                    raise errors.from_code(reply.code, reply.message, reply.details)
        finally:
            self._client.channel.forget_stream(self._rid, cancel=self.finish_reason is None)

    async def collect(self) -> list[GeneratedWord]:
        return [word async for word in self]
