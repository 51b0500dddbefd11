"""Prefix-state cache for stateless requests: a trie over word ids of states in pool slots.

Autocomplete clients re-send a growing text ("the", "the company", "the company said", …);
without this each request re-runs its whole prefix. After a predict the state after its
words is copied into a spare pool slot (``Row.save_after``: one device copy in the
request's own step) and filed under those ids; a later request copies the state of its
longest cached prefix into its slot (``Row.copies``) and feeds only the rest. An LSTM's
state after a prefix does not depend on what follows, so answers are the same up to float
rounding (batched vs alone, ≤ 1e-5).

Bounded by bytes (each entry is one slot), evicting the least recently used entry. Event
loop side only. An evicted slot may be reused at once: the worker copies before anything
in a step writes, and takes stateless items in order, so a request that still names it
copies it before a later request's step can overwrite it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.engine.metrics import EngineMetrics
from service.engine.runner import RowResult
from service.engine.state_pool import StatePool
from service.engine.submit import Submitter
from service.engine.work import WorkItem, WorkKind


@dataclass(eq=False, slots=True)
class _Node:
    parent: _Node | None
    token: int
    children: dict[int, _Node] = field(default_factory=dict)
    slot: int | None = None


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

    def lookup(self, ids: list[int]) -> tuple[int, int | None]:
        """(length of the longest cached prefix of ``ids``, its slot or None)."""
        node, best, best_length = self._root, None, 0
        for length, token in enumerate(ids, 1):
            child = node.children.get(token)
            if child is None:
                break
            node = child
            if node.slot is not None:
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

    def commit(self, ids: list[int], slot: int) -> None:
        """``slot`` now holds the state after ``ids``."""
        node = self._root
        for token in ids:
            child = node.children.get(token)
            if child is None:  # pruned meanwhile
                child = node.children.setdefault(token, _Node(node, token))
            node = child
        if node.slot is not None:  # a twin request filed it first
            self._release(slot)
            return
        node.slot = slot
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
        node.slot = None
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
    length, cached, save = 0, None, None
    if cache is not None and cache.enabled:
        length, cached = cache.lookup(ids)
        save = cache.reserve(ids) if length < len(ids) else None
    item = submitter.item(WorkKind.PREDICT, slot, ids[length:], reset=cached is None, top_k=top_k)
    if cached is None and save is None:
        if release_slot:
            item.on_finish = lambda _: pool.release(slot)
        return item
    item.copies = None if cached is None else [(cached, slot)]
    item.save_after = save

    def finish(outcome: Any) -> None:
        if release_slot:
            pool.release(slot)
        if save is not None and cache is not None:
            if isinstance(outcome, RowResult):
                cache.commit(ids, save)
            else:
                cache.abandon(ids, save)

    item.on_finish = finish
    return item
