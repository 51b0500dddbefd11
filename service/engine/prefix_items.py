"""Stateless work items that use the prefix cache (``service.engine.prefix_cache``).

A predict, score or prompt of a generation looks up its longest cached prefix, copies that
state into its slot, runs only the rest, and files its own states (every ``INTERVAL``
words inside the prompt and at its end) when its step is done.
"""

from __future__ import annotations

from typing import Any

from service.engine.history import StateItem
from service.engine.prefix_cache import INTERVAL, MAX_CACHED_WORDS, MAX_WITHIN, PrefixCache
from service.engine.runner import RowResult
from service.engine.state_pool import StatePool
from service.engine.submit import Submitter
from service.engine.work import WorkItem, WorkKind


def cached_item(
    submitter: Submitter,
    pool: StatePool,
    cache: PrefixCache | None,
    slot: int,
    ids: list[int],
    top_k: int,
    release_slot: bool = True,
) -> WorkItem:
    """A predict item for ``slot`` that copies the longest cached prefix's state (if any)
    and files its own states into the cache; it frees ``slot`` when done unless
    ``release_slot`` is False (a generation goes on from it)."""
    length, cached, saves = 0, None, []
    if cache is not None and cache.enabled:
        length, cached = cache.lookup(ids)
        saves = cache.reserve(ids, _positions(length, len(ids)))
    item = submitter.item(WorkKind.PREDICT, slot, ids[length:], reset=cached is None, top_k=top_k)
    if cached is None and not saves:
        if release_slot:
            item.on_finish = lambda _: pool.release(slot)
        return item
    _plan_saves(item, cached, slot, length, len(ids), saves)

    def finish(outcome: Any) -> None:
        if release_slot:
            pool.release(slot)
        if cache is not None:
            _file(cache, ids, saves, outcome, None)

    item.on_finish = finish
    return item


def cached_score_item(
    submitter: Submitter, pool: StatePool, cache: PrefixCache | None, slot: int, ids: list[int]
) -> tuple[WorkItem, list[float]]:
    """A score item for ``slot`` that starts from the longest cached prefix whose words'
    log-probs are known, and the log-probs of that prefix; it files its own states and
    log-probs into the cache and frees ``slot`` when done."""
    length, cached, saves, known = 0, None, [], []
    if cache is not None and cache.enabled:
        length, cached = cache.lookup(ids, scored=True)
        known = cache.logprobs_of(ids[:length]) if cached is not None else []
        saves = cache.reserve(ids, _positions(length, len(ids)))
    rest = ids[length:]
    item = submitter.item(WorkKind.SCORE, slot, rest, reset=cached is None, token_logprobs=True)
    _plan_saves(item, cached, slot, length, len(ids), saves)

    def finish(outcome: Any) -> None:
        pool.release(slot)
        if cache is not None and cache.enabled:
            _file(cache, ids, saves, outcome, known)

    item.on_finish = finish
    return item, known


def _positions(length: int, total: int) -> list[int]:
    """Where to file states for a prompt of ``total`` words run from ``length``: every
    ``INTERVAL`` words (a power-of-two multiple of it in very long prompts, so that at most
    ``MAX_WITHIN`` are inside) and at its end, within the first ``MAX_CACHED_WORDS``."""
    limit = min(total, MAX_CACHED_WORDS)
    if length >= limit:
        return []
    step = INTERVAL
    while limit // step > MAX_WITHIN:
        step *= 2  # multiples of a longer step are multiples of the shorter ones too
    inside = range((length // step + 1) * step, limit, step)
    return [*inside, *([total] if total <= MAX_CACHED_WORDS else [])]


def _plan_saves(
    item: StateItem,
    cached: int | None,
    slot: int,
    length: int,
    total: int,
    saves: list[tuple[int, int]],
) -> None:
    """Copy the cached prefix into ``slot``; save the step's state at each reserved
    position (inside the prompt: ``save_within``; at its end: ``save_after``)."""
    item.copies = None if cached is None else [(cached, slot)]
    item.save_within = [(p - length, s) for p, s in saves if p < total] or None
    item.save_after = next((s for p, s in saves if p == total), None)


def _file(
    cache: PrefixCache,
    ids: list[int],
    saves: list[tuple[int, int]],
    outcome: Any,
    known: list[float] | None,
) -> None:
    """After the step: file the reserved states (with log-probs, for a score whose
    ``known`` prefix log-probs came from the cache), or give the slots back."""
    if not isinstance(outcome, RowResult):
        if saves:
            cache.abandon(ids, saves)
        return
    logprobs = None if known is None else known + outcome.token_logprobs
    if saves:
        cache.commit(ids, saves, logprobs)
    if logprobs is not None:  # states a predict filed get this score's log-probs
        cache.annotate(ids, logprobs, _positions(0, len(ids)))
