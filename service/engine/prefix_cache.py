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

from service.engine.metrics import EngineMetrics
from service.engine.state_pool import StatePool

INTERVAL = 64  # words between the states filed inside one long prompt
MAX_WITHIN = 8  # at most this many inside one prompt (the interval doubles past it)
# Prompts are cached up to this many words: the trie has a node per word, and a request
# walks its path on the event loop (a 18,000-word score would walk 18,000 nodes).
MAX_CACHED_WORDS = 2048


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

    @classmethod
    def for_pool(cls, budget_bytes: int, pool: StatePool, metrics: EngineMetrics) -> PrefixCache:
        """A cache whose entries are slots of ``pool`` (allocated and released there)."""
        return cls(budget_bytes, pool.bytes_per_slot, pool.allocate, pool.release, metrics)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(self, ids: list[int], scored: bool = False) -> tuple[int, int | None]:
        """(length of the longest cached prefix of ``ids``, its slot or None); ``scored``:
        only entries that know their words' log-probs (``logprobs_of``)."""
        node, best, best_length = self._root, None, 0
        for length, token in enumerate(ids[:MAX_CACHED_WORDS], 1):
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

    def reserve(self, ids: list[int], positions: list[int]) -> list[tuple[int, int]]:
        """Slots to file the states after ``ids[:p]`` into, for each ``p`` of ``positions``
        (ascending) that holds no state yet: ``(p, slot)`` each, in one walk. The caller
        fills them, then calls ``commit`` or ``abandon``."""
        if not self.enabled or not positions:
            return []
        wanted, reserved, node = set(positions), [], self._root
        for length, token in enumerate(ids[: positions[-1]], 1):
            node = node.children.get(token) or node.children.setdefault(token, _Node(node, token))
            if length in wanted and node.slot is None:
                reserved.append((length, self._allocate()))
        if not reserved:
            self._prune(node)
        return reserved

    def logprobs_of(self, ids: list[int]) -> list[float]:
        """The log-probs kept with the entry of ``ids`` (found by ``lookup(scored=True)``)."""
        node = self._walk(ids, len(ids), create=False)[len(ids)]
        assert node is not None and node.logprobs is not None
        return node.logprobs.tolist()

    def annotate(self, ids: list[int], logprobs: list[float], positions: list[int]) -> None:
        """Keep the log-probs of ``ids[:p]`` with the entries at ``positions`` that hold a
        state and none yet (a score met entries a predict filed)."""
        for p, node in self._walk(ids, positions, create=False).items():
            if node is not None and node.slot is not None and node.logprobs is None:
                node.logprobs = array("f", logprobs[:p])

    def commit(
        self, ids: list[int], slots: list[tuple[int, int]], logprobs: list[float] | None
    ) -> None:
        """Each ``(p, slot)`` now holds the state after ``ids[:p]`` (``logprobs``: of each
        of ``ids``, when known)."""
        nodes = self._walk(ids, [p for p, _ in slots], create=True)
        for p, slot in slots:
            node = nodes[p]
            assert node is not None
            known = None if logprobs is None else array("f", logprobs[:p])
            if node.slot is not None:  # a twin request filed it first
                self._release(slot)
                node.logprobs = node.logprobs if node.logprobs is not None else known
                continue
            node.slot, node.logprobs = slot, known
            self._lru[node] = None
        while len(self._lru) > self.max_entries:
            self._evict()
        self._update_bytes()

    def abandon(self, ids: list[int], slots: list[tuple[int, int]]) -> None:
        nodes = self._walk(ids, [p for p, _ in slots], create=False)
        for p, slot in reversed(slots):
            self._release(slot)
            node = nodes[p]
            if node is not None:
                self._prune(node)

    def _walk(
        self, ids: list[int], positions: list[int] | int, create: bool
    ) -> dict[int, _Node | None]:
        """The nodes of ``ids[:p]`` for each position (created if ``create``; else None
        where the path ends), in one walk."""
        wanted = [positions] if isinstance(positions, int) else positions
        found: dict[int, _Node | None] = dict.fromkeys(wanted)
        node: _Node | None = self._root
        for length, token in enumerate(ids[: max(wanted, default=0)], 1):
            assert node is not None
            child = node.children.get(token)
            if child is None:
                if not create:
                    break
                child = node.children.setdefault(token, _Node(node, token))
            node = child
            if length in found:
                found[length] = node
        if 0 in found:
            found[0] = self._root
        return found

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
            siblings = node.parent.children
            if siblings.get(node.token) is not node:
                break  # pruned already (by an earlier position of the same path)
            del siblings[node.token]
            node = node.parent

    def _update_bytes(self) -> None:
        self._metrics.prefix_cache_bytes.set(len(self._lru) * self.bytes_per_slot)
