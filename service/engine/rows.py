"""What one model step is asked for each row, and what it answers (``ModelRunner.step``).

Kept apart from the runner so that the modules that build rows (work items, the prefix
cache, session history) and the session cache's step need no torch model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from service.engine.session_cache import CacheRow

# (h, c, cache): float32 bytes of h and c, each ``[layers, width]``, and the session
# cache's bytes (``session_cache.CachePool.dump``; b"" for a session without one).
SlotState = tuple[bytes, bytes, bytes]


@dataclass
class Row:
    """One row of a step.

    Attributes:
        slot: the state slot read and written.
        tokens: word ids to consume (may be empty).
        reset: start from the sentence-start state instead of the slot's contents.
        token_logprobs: return the log-prob of each consumed token.
        top_k: return the top-k of the next-word distribution (0: none).
        distribution: return the full next-word log-probs ``[V]`` (for sampling).
        restore: the ``SlotState`` to start from instead of the slot's contents (a
            session resumed from the store or imported from a token).
        capture_state: return the slot's new ``SlotState`` (to store it).
        prompt_top_k: return the top-k of the distribution that predicted each consumed
            token (OpenAI's ``echo`` with ``logprobs``; 0: none).
        copies: (source, target) slot pairs copied before the step reads any state
            (fork, rewind: a state copy on the device, no model step).
        save_to: a slot that receives the row's state *before* its tokens (a session's
            rewind history), after ``reset`` / ``restore`` / ``copies`` are applied.
        save_after: a slot that receives the row's state *after* its tokens (the prefix
            cache of stateless requests).
        cache: the session's continuous cache (``service.engine.session_cache``): the
            row's log-probs and predictions come from the mixture.
        capture_extra: another slot whose state to return as bytes (the oldest state of a
            session's rewind history, stored with the session).
        writes: (slot, h, c) float32 bytes written into other slots before the step (a
            stored rewind history coming back).
        save_within: (offset, slot) pairs: the state after the row's first ``offset``
            tokens goes to ``slot`` (the prefix cache's entries inside a long prompt).
    """

    slot: int
    tokens: list[int]
    reset: bool = False
    token_logprobs: bool = False
    top_k: int = 0
    distribution: bool = False
    restore: SlotState | None = None
    capture_state: bool = False
    prompt_top_k: int = 0
    copies: list[tuple[int, int]] | None = None
    save_to: int | None = None
    save_after: int | None = None
    cache: CacheRow | None = None
    capture_extra: int | None = None
    writes: list[tuple[int, bytes, bytes]] | None = None
    save_within: list[tuple[int, int]] | None = None


@dataclass
class RowResult:
    token_logprobs: list[float] = field(default_factory=list)
    top: list[tuple[int, float]] = field(default_factory=list)
    distribution: Tensor | None = None
    state: SlotState | None = None  # if capture_state
    extra_state: tuple[bytes, bytes] | None = None  # if capture_extra
    prompt_top: list[list[tuple[int, float]]] = field(default_factory=list)  # per token


def copy_only(row: Row) -> bool:
    """Nothing to compute or return: the row's copies were all it asked for."""
    return not (
        row.tokens
        or row.reset
        or row.top_k
        or row.distribution
        or row.token_logprobs
        or row.restore is not None
        or row.capture_state
        or row.capture_extra is not None
        or bool(row.save_within)
        or row.save_to is not None
        or row.save_after is not None
    )
