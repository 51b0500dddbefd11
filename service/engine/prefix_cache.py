"""Prefix-state cache for stateless requests: a trie over word ids of states in pool slots.

Autocomplete clients re-send a growing text ("the", "the company", "the company said", …);
without this each request re-runs its whole prefix. After a predict the state after its
words is copied into a spare pool slot (``Row.save_after``: one device copy in the
request's own step) and filed under those ids; a later request copies the state of its
longest cached prefix into its slot (``Row.copies``) and feeds only the rest. An LSTM's
state after a prefix does not depend on what follows, so answers are the same up to float
rounding (batched vs alone, ≤ 1e-5).

Inside a long prompt a state is also filed every ``INTERVAL`` words (``Row.save_within``:
the step runs in pieces and saves in between), so a text that shares only the first 200
words of a 500-word prompt still starts at word 192.

``score`` uses it too: an entry filed by a score also keeps the log-prob of every word
of its prefix (4 bytes each), so a later score of a longer text copies the state, reuses
those log-probs and runs only the rest. Entries filed by a predict have no log-probs and
are never used by a score.

Bounded by bytes (each entry is one slot), evicting the least recently used entry. Event
loop side only. An evicted slot may be reused at once: the worker copies before anything
in a step writes, and takes stateless items in order, so a request that still names it
copies it before a later request's step can overwrite it.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.engine.metrics import EngineMetrics
from service.engine.runner import RowResult
from service.engine.state_pool import StatePool
from service.engine.submit import Submitter
from service.engine.work import WorkItem, WorkKind

INTERVAL = 64  # words between the states filed inside one long prompt


@dataclass(eq=False, slots=True)
class _Node:
    parent: _Node | None
    token: int
    children: dict[int, _Node] = field(default_factory=dict)
    slot: int | None = None
    logprobs: array[float] | None = None  # each word's log-prob on the way here (a score)


class PrefixCache:
    """Longest-prefix lookup and LRU eviction of cached states."""

    def __init__(
        self,
        budget_bytes: int,
        bytes_per_slot: int,
        allocate: Callable[[], int],
        release: Callable[[int], None],
        metrics: EngineMetrics,
    ) -> None:
        self.max_entries = budget_bytes // bytes_per_slot if budget_bytes > 0 else 0
        self.bytes_per_slot = bytes_per_slot
        self._allocate = allocate
        self._release = release
        self._metrics = metrics
        # labelled children looked up once: ``labels()`` costs more than ``inc()``
        self._hits = metrics.prefix_cache_requests.labels("hit")
        self._misses = metrics.prefix_cache_requests.labels("miss")
        self._root = _Node(None, -1)
        self._lru: OrderedDict[_Node, None] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(self, ids: list[int], scored: bool = False) -> tuple[int, int | None]:
        """(length of the longest cached prefix of ``ids``, its slot or None); ``scored``:
        only entries that know their words' log-probs (``logprobs_of``)."""
        node, best, best_length = self._root, None, 0
        for length, token in enumerate(ids, 1):
            child = node.children.get(token)
            if child is None:
                break
            node = child
            if node.slot is not None and (not scored or node.logprobs is not None):
                best, best_length = node, length
        if best is None:
            self._misses.inc()
            return 0, None
        self._lru.move_to_end(best)
        self._hits.inc()
        self._metrics.prefix_cache_tokens_saved.inc(best_length)
        return best_length, best.slot

    def reserve(self, ids: list[int]) -> int | None:
        """A slot to file the state after ``ids`` into, or None (cached already, empty,
        or caching off). The caller fills it, then calls ``commit`` or ``abandon``."""
        if not self.enabled or not ids:
            return None
        node = self._root
        for token in ids:
            node = node.children.get(token) or node.children.setdefault(token, _Node(node, token))
        if node.slot is not None:
            self._prune(node)
            return None
        return self._allocate()

    def logprobs_of(self, ids: list[int]) -> list[float]:
        """The log-probs kept with the entry of ``ids`` (found by ``lookup(scored=True)``)."""
        node = self._find(ids)
        assert node is not None and node.logprobs is not None
        return node.logprobs.tolist()

    def annotate(self, ids: list[int], logprobs: list[float]) -> None:
        """Keep ``logprobs`` with the entry of ``ids``, if there is one."""
        node = self._find(ids)
        if node is not None and node.slot is not None and node.logprobs is None:
            node.logprobs = array("f", logprobs)

    def _find(self, ids: list[int]) -> _Node | None:
        node: _Node | None = self._root
        for token in ids:
            node = node.children.get(token) if node is not None else None
        return node

    def commit(self, ids: list[int], slot: int, logprobs: list[float] | None = None) -> None:
        """``slot`` now holds the state after ``ids`` (``logprobs``: of each of ``ids``)."""
        node = self._root
        for token in ids:
            child = node.children.get(token)
            if child is None:  # pruned meanwhile
                child = node.children.setdefault(token, _Node(node, token))
            node = child
        if node.slot is not None:  # a twin request filed it first
            self._release(slot)
            if logprobs is not None and node.logprobs is None:
                node.logprobs = array("f", logprobs)
            return
        node.slot = slot
        node.logprobs = None if logprobs is None else array("f", logprobs)
        self._lru[node] = None
        while len(self._lru) > self.max_entries:
            self._evict()
        self._update_bytes()

    def abandon(self, ids: list[int], slot: int) -> None:
        self._release(slot)
        node = self._root
        for token in ids:
            child = node.children.get(token)
            if child is None:
                return
            node = child
        self._prune(node)

    def _evict(self) -> None:
        node, _ = self._lru.popitem(last=False)
        assert node.slot is not None
        self._release(node.slot)
        node.slot, node.logprobs = None, None
        self._prune(node)
        self._metrics.prefix_cache_evictions.inc()

    def _prune(self, node: _Node) -> None:
        """Drop nodes that hold no state and lead to none."""
        while node.parent is not None and node.slot is None and not node.children:
            del node.parent.children[node.token]
            node = node.parent

    def _update_bytes(self) -> None:
        self._metrics.prefix_cache_bytes.set(len(self._lru) * self.bytes_per_slot)


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
    and files its own final state into the cache; it frees ``slot`` when done unless
    ``release_slot`` is False (a generation goes on from it)."""
    length, cached, save, within = 0, None, None, []
    if cache is not None and cache.enabled:
        length, cached = cache.lookup(ids)
        save = cache.reserve(ids) if length < len(ids) else None
        within = _interior(cache, ids, length)
    item = submitter.item(WorkKind.PREDICT, slot, ids[length:], reset=cached is None, top_k=top_k)
    if cached is None and save is None and not within:
        if release_slot:
            item.on_finish = lambda _: pool.release(slot)
        return item
    item.copies = None if cached is None else [(cached, slot)]
    item.save_after, item.save_within = save, within or None

    def finish(outcome: Any) -> None:
        if release_slot:
            pool.release(slot)
        if cache is not None:
            _file(cache, ids, length, save, within, outcome, None)

    item.on_finish = finish
    return item


def cached_score_item(
    submitter: Submitter, pool: StatePool, cache: PrefixCache | None, slot: int, ids: list[int]
) -> tuple[WorkItem, list[float]]:
    """A score item for ``slot`` that starts from the longest cached prefix whose words'
    log-probs are known, and the log-probs of that prefix; it files its own state and
    log-probs into the cache and frees ``slot`` when done."""
    length, cached, save, known, within = 0, None, None, [], []
    if cache is not None and cache.enabled:
        length, cached = cache.lookup(ids, scored=True)
        known = cache.logprobs_of(ids[:length]) if cached is not None else []
        save = cache.reserve(ids) if length < len(ids) else None
        within = _interior(cache, ids, length)
    rest = ids[length:]
    item = submitter.item(WorkKind.SCORE, slot, rest, reset=cached is None, token_logprobs=True)
    item.copies = None if cached is None else [(cached, slot)]
    item.save_after, item.save_within = save, within or None

    def finish(outcome: Any) -> None:
        pool.release(slot)
        if cache is not None and cache.enabled:
            _file(cache, ids, length, save, within, outcome, known)

    item.on_finish = finish
    return item, known


def _interior(cache: PrefixCache, ids: list[int], length: int) -> list[tuple[int, int]]:
    """Slots for the states every ``INTERVAL`` words inside ``ids`` past the cached
    ``length``: (offset into the words the step runs, slot)."""
    start = (length // INTERVAL + 1) * INTERVAL
    within = []
    for position in range(start, len(ids), INTERVAL):
        slot = cache.reserve(ids[:position])
        if slot is not None:
            within.append((position - length, slot))
    return within


def _file(
    cache: PrefixCache,
    ids: list[int],
    length: int,
    save: int | None,
    within: list[tuple[int, int]],
    outcome: Any,
    known: list[float] | None,
) -> None:
    """After the step: file the reserved states (with log-probs, for a score whose
    ``known`` prefix log-probs came from the cache), or give the slots back."""
    done = isinstance(outcome, RowResult)
    logprobs = known + outcome.token_logprobs if done and known is not None else None
    for offset, slot in [*within, *([(len(ids) - length, save)] if save is not None else [])]:
        prefix = ids[: length + offset]
        if not done:
            cache.abandon(prefix, slot)
        else:
            cache.commit(prefix, slot, None if logprobs is None else logprobs[: len(prefix)])
    if done and logprobs is not None:  # states a predict filed get this score's log-probs
        for position in [*range(INTERVAL, len(ids), INTERVAL), len(ids)]:
            cache.annotate(ids[:position], logprobs[:position])
