"""What waits in the inference queue: one work item per request, plus generation state."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine.params import FinishReason, SamplingParams
from service.engine.rows import Row, SlotState
from service.engine.session_cache import CacheRow


class WorkKind(enum.Enum):
    PREDICT = "predict"
    SCORE = "score"
    FEED = "feed"
    RESET = "reset"
    GENERATE = "generate"
    RESTORE = "restore"  # write a stored state into the slot
    SNAPSHOT = "snapshot"  # read the slot's state (to store it)


@dataclass(frozen=True)
class TokenEvent:
    """A generated word; ``logprob`` and ``top`` ((id, log-prob), likeliest first) only
    when the generation asked for log-probs."""

    token_id: int
    index: int  # 0-based index among the generated words
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass(frozen=True)
class DoneEvent:
    reason: FinishReason
    error: BaseException | None = None


GenerationEvent = TokenEvent | DoneEvent


@dataclass(eq=False)
class Generation:
    """A running generation; advanced one word per model step (continuous batching)."""

    params: SamplingParams
    generator: torch.Generator
    max_tokens: int
    stop_at_eos: bool
    keep_state: bool  # a session's generation: its last word is fed before done
    emit: Callable[[GenerationEvent], None]  # called on the event loop
    produced: int = 0
    pending: list[int] = field(default_factory=list)  # words to feed next step
    finishing: FinishReason | None = None
    logprobs: int | None = None  # None: none; 0: each word's; k: also the top k


@dataclass(eq=False)
class WorkItem:
    """A request's share of the model: tokens to feed into a state slot.

    ``session_key`` serialises items of one session (one row per session per step, in
    arrival order). ``future`` receives the ``RowResult`` (not used by generations).
    """

    kind: WorkKind
    slot: int
    tokens: list[int]
    deadline: float
    future: asyncio.Future[Any] | None = None
    session_key: object | None = None
    reset: bool = False
    top_k: int = 0
    token_logprobs: bool = False
    generation: Generation | None = None
    on_finish: Callable[[Any], None] | None = None  # loop side, with the result or error
    restore: SlotState | None = None
    capture_state: bool = False
    cancelled: bool = False
    started: bool = False
    prompt_top_k: int = 0  # the top k at every consumed position (OpenAI's echo)
    cache: CacheRow | None = None  # a cached session's ring (``session_cache``)
    seq: int = 0  # its place in submission order (``InferenceWorker.settled_below``)

    def complete(self, outcome: Any) -> None:
        """Deliver a ``RowResult`` or an exception (on the event loop)."""
        self.finish(outcome)
        future = self.future
        if future is None or future.done():
            return
        if isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def finish(self, outcome: Any) -> None:
        """Run ``on_finish`` once, and drop it. It usually closes over this item, and that
        cycle would otherwise be left to the garbage collector, whose young-generation
        passes then freed ~50,000 objects at a time: 40-115 ms in which the engine
        answered nothing (BENCHMARKS §0.5)."""
        on_finish, self.on_finish = self.on_finish, None
        if on_finish is not None:
            on_finish(outcome)

    def row(self) -> Row:
        gen = self.generation
        if gen is not None and self.started:
            cache = None if self.cache is None else CacheRow(self.cache.slot)
            return Row(
                self.slot, list(gen.pending), distribution=gen.finishing is None, cache=cache
            )
        return Row(
            self.slot,
            self.tokens,
            reset=self.reset,
            top_k=self.top_k,
            token_logprobs=self.token_logprobs,
            distribution=gen is not None,
            restore=self.restore,
            capture_state=self.capture_state,
            prompt_top_k=self.prompt_top_k,
            cache=self.cache,
        )

    def cost_tokens(self) -> int:
        return max(1, len(self.tokens))
