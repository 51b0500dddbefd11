"""Preallocated recurrent state for every session: ``h``/``c`` ``[layers, capacity, hidden]``.

A session owns one slot (a column index); batches gather and scatter by slot index, so
there are no per-session tensors. Slot bookkeeping (``allocate``/``release``) runs on
the event loop; the tensors themselves are touched only by the inference thread, which
grows them (``ensure_capacity``) before using a new slot.
"""

from __future__ import annotations

import math
from array import array

import torch
from torch import Tensor


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
        self.h = torch.zeros(layers, capacity, hidden, device=device, dtype=dtype)
        self.c = torch.zeros(layers, capacity, self.cell_size, device=device, dtype=dtype)
        # log-sum-exp of each slot's next-word logits when known (NaN otherwise): scoring
        # the first fed token then needs one dot product instead of a decoder pass.
        self.log_norm = array("d", [math.nan]) * capacity
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._reserved = capacity  # slots handed out or free; tensors may lag behind
        self._shares: dict[int, int] = {}  # slot -> extra holders (shared history states)
        self.in_use = 0

    @property
    def capacity(self) -> int:
        return int(self.h.shape[1])

    @property
    def bytes_per_slot(self) -> int:
        return self.layers * (self.hidden + self.cell_size) * self.h.element_size()

    def allocate(self) -> int:
        """A free slot index; reserves more slots when none is free (event loop side)."""
        if not self._free:
            new_total = max(self._reserved + 1, int(self._reserved * self.growth))
            self._free = list(range(new_total - 1, self._reserved - 1, -1))
            self._reserved = new_total
        self.in_use += 1
        return self._free.pop()

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
        self._free.append(slot)

    def share(self, slots: list[int]) -> None:
        """One more holder of each of ``slots`` (states nobody writes again: rewind history
        entries that a fork shares with its source)."""
        shares = self._shares
        for slot in slots:
            shares[slot] = shares.get(slot, 0) + 1

    def ensure_capacity(self) -> None:
        """Grow the tensors to cover every reserved slot (inference thread only)."""
        if self._reserved <= self.capacity:
            return
        extra = self._reserved - self.capacity
        self.h = torch.cat([self.h, self.h.new_zeros(self.layers, extra, self.hidden)], dim=1)
        self.c = torch.cat([self.c, self.c.new_zeros(self.layers, extra, self.cell_size)], dim=1)
        self.log_norm.extend(array("d", [math.nan]) * extra)

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
