"""A session's rewind history: the states it can go back to, without re-running the model.

Each feed of a session with history saves the state it *starts from* into a spare pool
slot (``Row.save_to``: one device copy inside the feed's own step), so a history is a
list of ``(position, slot)`` in position order plus the word ids fed since its oldest
entry. Rewinding to a position that begins a feed (a keyboard feeding word by word: every
position) is one slot copy; a position inside a longer feed copies the state that
began it and re-feeds the few words in between (one short model step). Entries older
than the ``limit`` newest tokens are dropped and their slots freed, so a session holds at
most ``limit + 1`` extra slots. Event-loop side only; slots are copied by the worker.

With a session store, a history travels as its *oldest* state plus the word ids fed since
(``StoredHistory``): a session resumed elsewhere can rewind as far as before, each rewind
copying that state and re-feeding the words up to its target (one short model step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.engine.runner import Row
from service.engine.work import WorkItem

START = -1  # the sentence-start state: no slot needed
Release = Callable[[int], None]


@dataclass(frozen=True)
class StoredHistory:
    """What a session store keeps of a rewind history: the state at position ``base``
    (empty bytes: the sentence start) and the word ids fed from there."""

    base: int
    tokens: list[int]
    h: bytes = b""
    c: bytes = b""

    def record_fields(self) -> dict[str, Any]:
        """The ``SessionRecord`` fields that hold it."""
        return {
            "history_base": self.base,
            "history_tokens": self.tokens,
            "history_h": self.h,
            "history_c": self.c,
        }

    def restored(self, slot: int) -> History:
        """The history back in the pool, its oldest state in ``slot`` (or ``START``)."""
        return History([(self.base, slot)], list(self.tokens), self.base)


@dataclass(frozen=True)
class HistoryCapture:
    """Which state a save must read (``slot``; ``START``: none) to store a history."""

    base: int
    slot: int
    tokens: list[int]

    def hold(self, item: StateItem, share: Callable[[list[int]], None]) -> None:
        """Have ``item``'s step read the state, holding its slot until then (one more
        holder: the caller's ``finish`` releases it)."""
        if self.slot != START:
            share([self.slot])
            item.capture_extra = self.slot

    def stored(self, state: tuple[bytes, bytes] | None) -> StoredHistory:
        h, c = state if state is not None else (b"", b"")
        return StoredHistory(self.base, self.tokens, h, c)


@dataclass(slots=True)
class History:
    """``entries``: (position, slot or ``START``); ``tokens``: the ids fed from
    ``base`` (the oldest entry's position) up to the session's position."""

    entries: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    base: int = 0

    def slots(self) -> list[int]:
        return [slot for _, slot in self.entries if slot != START]

    def slot_count(self) -> int:
        """``len(self.slots())`` without the list: only the oldest entry can be ``START``."""
        entries = self.entries
        return len(entries) - 1 if entries and entries[0][1] == START else len(entries)

    def kept(self, position: int, limit: int) -> int:
        """How many of the latest tokens a rewind may undo."""
        if not self.entries:
            return 0
        return min(limit, position - self.entries[0][0])

    def clear(self, release: Release) -> None:
        for slot in self.slots():
            release(slot)
        self.entries, self.tokens, self.base = [], [], 0

    def restart(self, ids: list[int], limit: int, release: Release) -> None:
        """After a reset (+ ``ids``): the sentence start is the oldest state."""
        self.clear(release)
        if limit > 0:
            self.entries, self.tokens = [(0, START)], list(ids)
            self.prune(len(ids), limit, release)

    def record(self, before: int, slot: int, ids: list[int], limit: int, release: Release) -> None:
        """A feed of ``ids`` started at position ``before`` from the state now in ``slot``."""
        if not self.entries:
            self.base, self.tokens = before, []
        self.entries.append((before, slot))
        self.tokens.extend(ids)
        self.prune(before + len(ids), limit, release)

    def prune(self, position: int, limit: int, release: Release) -> None:
        """Drop entries the ``limit`` newest tokens no longer need."""
        entries = self.entries
        drop = 0
        while len(entries) - drop >= 2 and entries[drop + 1][0] <= position - limit:
            drop += 1
        for _, slot in entries[:drop]:
            if slot != START:
                release(slot)
        if drop:
            self.entries = entries[drop:]
            new_base = self.entries[0][0]
            self.tokens = self.tokens[new_base - self.base :]
            self.base = new_base

    def plan(self, target: int) -> tuple[int, list[int]]:
        """(slot or ``START`` holding the latest kept state at or before ``target``, the
        ids to feed from it to reach ``target``)."""
        position, slot = next(e for e in reversed(self.entries) if e[0] <= target)
        return slot, self.tokens[position - self.base : target - self.base]

    def truncate(self, target: int, release: Release) -> None:
        """After a rewind to ``target``: states at or past it are gone."""
        keep = [e for e in self.entries if e[0] < target]
        for _, slot in self.entries[len(keep) :]:
            if slot != START:
                release(slot)
        self.entries = keep
        self.tokens = self.tokens[: max(0, target - self.base)]
        if not keep:
            self.tokens, self.base = [], target

    def capture(self, ids: list[int], before: int, save_to: int | None) -> HistoryCapture | None:
        """What to store of this history once a feed of ``ids`` that began at ``before``
        (its state saved into ``save_to``) is applied (``ids`` empty: as it is now)."""
        if self.entries:
            base, slot = self.entries[0]
            return HistoryCapture(base, slot, self.tokens + ids)
        if save_to is not None:
            return HistoryCapture(before, save_to, list(ids))
        return None

    def capture_rewound(self, target: int) -> HistoryCapture | None:
        """``capture`` of this history after a rewind to ``target``."""
        kept = [e for e in self.entries if e[0] < target]
        if not kept:
            return None
        base, slot = kept[0]
        return HistoryCapture(base, slot, self.tokens[: target - self.base])

    def share(self, share_all: Callable[[list[int]], None]) -> History:
        """A fork's history: the same kept states, each slot with one more holder (history
        states are never written again, so sharing needs no copy)."""
        share_all(self.slots())
        return History(list(self.entries), list(self.tokens), self.base)


@dataclass(eq=False)
class StateItem(WorkItem):
    """A work item that also copies slots (fork, rewind, a cached prefix) or saves its
    state before or after its tokens (a feed with history, the prefix cache); see ``Row``."""

    copies: list[tuple[int, int]] | None = None
    save_to: int | None = None
    save_after: int | None = None
    capture_extra: int | None = None
    writes: list[tuple[int, bytes, bytes]] | None = None
    save_within: list[tuple[int, int]] | None = None

    def row(self) -> Row:
        row = super().row()
        row.copies, row.save_to, row.save_after = self.copies, self.save_to, self.save_after
        row.capture_extra, row.writes = self.capture_extra, self.writes
        row.save_within = self.save_within
        return row
