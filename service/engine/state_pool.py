"""Preallocated recurrent state for every session: ``h``/``c`` ``[layers, capacity, hidden]``.

On a CPU the engine first ``reserve``s address space for the most slots its settings can
need; the pool then grows by counting more of that mapping's slots as in use, without a
copy (``reserved_memory``). Past it, or where there is none, a growth makes bigger tensors.

A session owns one slot (a column index); batches gather and scatter by slot index, so
there are no per-session tensors. Slot bookkeeping (``allocate``/``release``) runs on
the event loop; the tensors are touched by the inference thread, which grows them
(``ensure_capacity``) before using a new slot, and by one event-loop shortcut: a fork of
an idle session copies its state at once (``copy_now``, CPU pools only) instead of
waiting for a step.

That shortcut writes outside the worker's queue order, so it may only write a slot that
no queued or running work item still names. A released slot therefore waits in
quarantine, tagged with the number of items submitted so far, until every one of them
has had its first step (``settled_below``); plain ``allocate`` (whose writes do go
through the queue) takes quarantined slots first, and ``allocate_settled`` only
settled ones.
"""

from __future__ import annotations

import logging
import math
import threading
from array import array
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from service.engine.reserved_memory import reserved_zeros
from service.engine.spare_tensors import SpareTensors, Tensors

# Share of the reserved slots in use at which the next growth's tensors are made ahead
# (CPU pools, ``SpareTensors``): the spare then costs memory only near a growth, which
# needs old and new tensors at once anyway.
SPARE_AT = 0.9

log = logging.getLogger(__name__)


class StatePool:
    """Fixed-size state slots that grow by ``growth`` when full."""

    def __init__(
        self,
        layers: int,
        hidden: int,
        capacity: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        growth: float = 1.5,
        cell_size: int | None = None,
    ) -> None:
        self.layers = layers
        self.hidden = hidden
        self.cell_size = hidden if cell_size is None else cell_size  # 0: rnn/gru keep h only
        self.device = device
        self.dtype = dtype
        self.growth = growth
        self.h, self.c = self._zeros(capacity)
        # log-sum-exp of each slot's next-word logits when known (NaN otherwise): scoring
        # the first fed token then needs one dot product instead of a decoder pass.
        self.log_norm = array("d", [math.nan]) * capacity
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._reserved = capacity  # slots handed out or free; tensors may lag behind
        self._shares: Counter[int] = Counter()  # slot -> extra holders (shared history states)
        self._quarantine: deque[tuple[int, int]] = deque()  # (items submitted, slot)
        self.in_use = 0
        # Set by the engine from its worker: items submitted so far, and the lowest
        # sequence number of an item that has not had its first step (see the module).
        self.submitted: Callable[[], int] = lambda: 0
        self.settled_below: Callable[[], int] = lambda: 1
        self._grow_lock = threading.Lock()  # ensure_capacity vs copy_now
        self._host_views: tuple[Any, Any] | None = None  # numpy views of h, c (copy_now)
        self._spares = SpareTensors() if device.type == "cpu" else None
        self._spare_at = int(SPARE_AT * capacity)
        self._room_slots = 0  # slots of the reserved mapping h, c are (0: no reservation)
        self._room_used = 0  # of them, in use as the pool (``capacity``)

    def reserve(self, slots: int) -> bool:
        """Reserve address space for ``slots`` slots (CPU pools, before the worker runs):
        from then on the pool grows up to that many inside zero pages that exist once
        written (``reserved_zeros``), never by a copy. False where the kernel
        refuses the mapping: the pool then grows as before."""
        if self.device.type != "cpu" or slots <= self.capacity:
            return False
        h = reserved_zeros((self.layers, slots, self.hidden), self.dtype)
        c = reserved_zeros((self.layers, slots, self.cell_size), self.dtype)
        gib = slots * self.bytes_per_slot / 2**30
        if h is None or c is None:
            log.info("state pool: no address space reserved (%.1f GiB refused)", gib)
            return False
        log.info("state pool: address space for %d slots (%.1f GiB) reserved", slots, gib)
        with self._grow_lock:
            old = self.capacity
            h[:, :old].copy_(self.h)
            c[:, :old].copy_(self.c)
            self._room_slots, self._room_used = slots, old
            # The whole mapping, not a view of its first slots: indexing a view strided
            # over layers made torch copy it whole (index_select: 140 ms at 120,000 slots).
            self.h, self.c = h, c
        return True

    def _in_room(self, slots: int) -> bool:
        return slots <= self._room_slots

    @property
    def capacity(self) -> int:
        """Slots the tensors cover (in a reservation: the slots handed out so far)."""
        return self._room_used if self._room_slots else int(self.h.shape[1])

    @property
    def bytes_per_slot(self) -> int:
        return self.layers * (self.hidden + self.cell_size) * self.h.element_size()

    def allocate(self) -> int:
        """A free slot index; reserves more slots when none is free (event loop side).
        A slot still in quarantine is fine here: its first write is queued work."""
        if self._quarantine:
            self.in_use += 1
            return self._quarantine.pop()[1]
        if not self._free:
            new_total = max(self._reserved + 1, int(self._reserved * self.growth))
            self._free = list(range(new_total - 1, self._reserved - 1, -1))
            self._reserved = new_total
            self._spare_at = int(SPARE_AT * new_total)
        self.in_use += 1
        if self.in_use >= self._spare_at and self._spares is not None:
            total = self._next_total()  # (only near full: allocate runs for every feed)
            if not self._in_room(total):
                self._spares.request(self._zeros, total)
        return self._free.pop()

    def _next_total(self) -> int:
        """Slots reserved after the next growth."""
        return max(self._reserved + 1, int(self._reserved * self.growth))

    def _zeros(self, slots: int) -> Tensors:
        h = torch.zeros(self.layers, slots, self.hidden, device=self.device, dtype=self.dtype)
        c = torch.zeros(self.layers, slots, self.cell_size, device=self.device, dtype=self.dtype)
        return h, c

    def release(self, slot: int) -> None:
        """Give back one hold on ``slot``; it is free once its last holder released it."""
        shares = self._shares.get(slot)
        if shares is not None:
            if shares == 1:
                del self._shares[slot]
            else:
                self._shares[slot] = shares - 1
            return
        self.in_use -= 1
        self._quarantine.append((self.submitted(), slot))

    def allocate_settled(self) -> int | None:
        """A free slot that no queued or running item names and that the tensors already
        hold (``copy_now`` may write it), or None."""
        settled, quarantine, free = self.settled_below(), self._quarantine, self._free
        while quarantine and quarantine[0][0] < settled:
            free.append(quarantine.popleft()[1])
        if not free or free[-1] >= self.capacity:
            return None
        self.in_use += 1
        return free.pop()

    def share(self, slots: list[int]) -> None:
        """One more holder of each of ``slots`` (states nobody writes again: rewind history
        entries that a fork shares with its source)."""
        self._shares.update(slots)  # Counter.update counts in C: a fork shares ~33 slots

    @property
    def shared_holds(self) -> int:
        """Holds beyond the first on shared slots (a fork's share of its source's history
        states): subtracted from the histories' slot count, each shared state counts once."""
        return sum(self._shares.values())

    def ensure_capacity(self) -> None:
        """Grow the tensors to cover every reserved slot (inference thread only): into
        the spare pair made ahead when there is one big enough, else freshly made."""
        if self._reserved <= self.capacity:
            return
        with self._grow_lock:
            old = self.capacity
            if self._in_room(self._reserved):
                self._room_used = self._reserved
            else:  # no room reserved, or past it: grow into new tensors from here on
                self._room_slots = 0
                spare = self._spares.take(self._reserved) if self._spares is not None else None
                h, c = spare if spare is not None else self._zeros(self._reserved)
                h[:, :old].copy_(self.h[:, :old])
                c[:, :old].copy_(self.c[:, :old])
                self.h, self.c = h, c
            self.log_norm.extend(array("d", [math.nan]) * (self.capacity - old))

    def gather(self, slots: Tensor) -> tuple[Tensor, Tensor]:
        """States of ``slots`` ``[B]`` (int64, on device) as ``[layers, B, hidden]`` copies."""
        return self.h.index_select(1, slots), self.c.index_select(1, slots)

    def scatter(self, slots: Tensor, h: Tensor, c: Tensor) -> None:
        """Write ``h``/``c`` ``[layers, B, hidden]`` back to ``slots`` (no duplicates)."""
        self.h.index_copy_(1, slots, h)
        self.c.index_copy_(1, slots, c)

    def read(self, slot: int) -> tuple[Tensor, Tensor]:
        """One slot's state ``[layers, hidden]`` each, copied to the CPU."""
        return self.h[:, slot].cpu().clone(), self.c[:, slot].cpu().clone()

    def write(self, slot: int, h: Tensor, c: Tensor) -> None:
        self.h[:, slot] = h.to(self.device, self.dtype)
        self.c[:, slot] = c.to(self.device, self.dtype)

    def copy(self, sources: list[int], targets: list[int]) -> None:
        """Copy whole slots, log-sum-exp included (inference thread only). Fork and rewind
        cost this one gather and scatter. Every source is read before any target is
        written, so a slot may be a source of one pair and the target of another."""
        device = self.h.device
        source = torch.tensor(sources, device=device)
        target = torch.tensor(targets, device=device)
        self.h.index_copy_(1, target, self.h.index_select(1, source))
        self.c.index_copy_(1, target, self.c.index_select(1, source))
        norms = [self.log_norm[s] for s in sources]
        for t, norm in zip(targets, norms, strict=True):
            self.log_norm[t] = norm

    @property
    def copies_now(self) -> bool:
        """Whether ``copy_now`` may be used: on a CPU pool, where there is no stream
        order to keep with the inference thread."""
        return self.device.type == "cpu"

    def copy_now(self, source: int, target: int) -> None:
        """Copy one slot on the calling thread (the event loop): ``source`` must be a state
        no queued item writes (an idle session's) and ``target`` a slot from
        ``allocate_settled``, so no step reads or writes either meanwhile."""
        with self._grow_lock:
            if self._host_views is None or self._host_views[0].shape != self.h.shape:
                self._host_views = (self.h.numpy(), self.c.numpy())  # views: ~2 us a copy
            h, c = self._host_views
            h[:, target] = h[:, source]
            c[:, target] = c[:, source]
        self.log_norm[target] = self.log_norm[source]
