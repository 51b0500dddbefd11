"""Continuous caches of sessions (Grave et al. 2016) held on the device: the pool and the math.

A cached session remembers pairs ``(h_i, x_{i+1})``: the top-layer output at each of its
steps and the word that followed it (``models.continuous_cache`` has the method and the
offline evaluator). Every cached session owns one ring of ``window + history`` pairs in
``CachePool.keys`` (float16) and ``CachePool.words``; its pair count equals its position,
so a rewind of ``n <= history`` tokens only lowers the count and the window it sees is
exact again. Keys are never reordered: the pair of absolute index ``p`` sits in ring slot
``p % ring``, and which slots a query sees follows from their age.

Allocation runs on the event loop (bounded by ``max_bytes``: past it ``Overloaded``, a
429); the tensors are touched only by the inference thread (``ModelRunner``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.continuous_cache import KEY_DTYPE, CacheParams
from service.engine.errors import Overloaded
from service.engine.spare_tensors import SpareTensors, Tensors
from service.engine.state_pool import SPARE_AT

TAG = b"LSC1"
HEADER = struct.Struct("<4sQI")  # tag, pair count (the position), pairs that follow


@dataclass
class CacheRow:
    """A row's cache work (``Row.cache``): the session's ring, plus what a fork or rewind asks.

    Attributes:
        slot: the session's ring.
        copy_from: a fork: the source session's ring, copied first.
        rewind_to: a rewind: the pair count to go back to before the row's tokens.
    """

    slot: int
    copy_from: int | None = None
    rewind_to: int | None = None


class CachePool:
    """Rings of ``(key, word)`` pairs, one per cached session, grown on demand."""

    def __init__(
        self,
        params: CacheParams,
        hidden: int,
        history: int,
        max_bytes: int,
        device: torch.device,
        capacity: int = 16,
    ) -> None:
        self.params = params
        self.hidden = hidden
        self.ring = params.window + max(0, history)
        self.max_bytes = max_bytes
        self.device = device
        self.keys, self.words, self.last_weights = self._zeros(capacity)
        self.counts: list[int] = [0] * capacity  # pairs made (the session's position)
        self.lows: list[int] = [0] * capacity  # the oldest pair the ring still holds
        self.fresh: list[bool] = [False] * capacity  # last_weights matches the ring
        self.has: list[bool] = [False] * capacity  # last_weights saw at least one pair
        self.ring_index = torch.arange(self.ring, device=device)
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._reserved = capacity
        self.in_use = 0
        self._spares = SpareTensors() if device.type == "cpu" else None  # as the state pool's
        self._spare_at = int(SPARE_AT * capacity)
        per_pair = hidden * self.keys.element_size() + self.words.element_size()
        self.bytes_per_session = self.ring * (per_pair + self.last_weights.element_size())

    def _zeros(self, slots: int) -> Tensors:
        """``keys``, ``words`` and ``last_weights`` for ``slots`` sessions: the latter is
        the attention of each session's latest output over its window (computed for its
        next-word prediction), which the next fed word's cache probability is read from."""
        keys = torch.zeros(slots, self.ring, self.hidden, dtype=KEY_DTYPE, device=self.device)
        words = torch.zeros(slots, self.ring, dtype=torch.long, device=self.device)
        return keys, words, torch.zeros(slots, self.ring, device=self.device)

    @property
    def bytes_in_use(self) -> int:
        return self.in_use * self.bytes_per_session

    # ---- event-loop side -------------------------------------------------------------
    def allocate(self) -> int:
        """A ring for a new cached session; ``Overloaded`` past the byte budget."""
        if self.bytes_in_use + self.bytes_per_session > self.max_bytes:
            raise Overloaded(
                f"session cache memory full ({self.in_use} cached sessions, "
                f"{self.bytes_per_session} bytes each; LSTM_SERVE_MAX_CACHE_BYTES="
                f"{self.max_bytes})"
            )
        if not self._free:
            grown = max(self._reserved + 1, int(self._reserved * 1.5))
            self._free = list(range(grown - 1, self._reserved - 1, -1))
            self._reserved = grown
            self._spare_at = int(SPARE_AT * grown)
        self.in_use += 1
        if self.in_use >= self._spare_at and self._spares is not None:
            self._spares.request(self._zeros, max(self._reserved + 1, int(self._reserved * 1.5)))
        return self._free.pop()

    def release(self, slot: int) -> None:
        self.in_use -= 1
        self._free.append(slot)

    # ---- inference thread ------------------------------------------------------------
    def ensure_capacity(self) -> None:
        """Grow to every reserved ring: into the set made ahead (``SpareTensors``) when
        there is one big enough, else freshly made."""
        old = self.keys.shape[0]
        if self._reserved <= old:
            return
        spare = self._spares.take(self._reserved) if self._spares is not None else None
        grown = spare if spare is not None else self._zeros(self._reserved)
        for new, current in zip(grown, (self.keys, self.words, self.last_weights), strict=True):
            new[:old].copy_(current)
        self.keys, self.words, self.last_weights = grown
        extra = self.keys.shape[0] - old
        self.counts.extend([0] * extra)
        self.lows.extend([0] * extra)
        self.fresh.extend([False] * extra)
        self.has.extend([False] * extra)

    def clear(self, slot: int) -> None:
        self.counts[slot] = self.lows[slot] = 0
        self.fresh[slot] = False

    def prepare(self, row: CacheRow, reset: bool) -> None:
        """Apply a fork's copy, a rewind or a reset before the row's tokens."""
        slot = row.slot
        if row.copy_from is not None:
            self.keys[slot] = self.keys[row.copy_from]
            self.words[slot] = self.words[row.copy_from]
            self.counts[slot] = self.counts[row.copy_from]
            self.lows[slot] = self.lows[row.copy_from]
            self.last_weights[slot] = self.last_weights[row.copy_from]
            self.fresh[slot] = self.fresh[row.copy_from]
            self.has[slot] = self.has[row.copy_from]
        if reset:
            self.clear(slot)
        elif row.rewind_to is not None:
            self.counts[slot] = max(self.lows[slot], min(self.counts[slot], row.rewind_to))
            self.fresh[slot] = False

    def ages(self, slot: int) -> tuple[Tensor, int]:
        """How many pairs ago each ring slot's pair was made, and how many pairs back the
        ring is exact (a pair is usable when its age is below both that and the window)."""
        count = self.counts[slot]
        ring = torch.arange(self.ring, device=self.device)
        return (count - 1 - ring) % self.ring, count - self.lows[slot]

    def append(self, slot: int, keys: Tensor, words: Tensor) -> None:
        """Record pairs ``keys [T, H]`` / ``words [T]`` (oldest first) after the count."""
        steps = keys.shape[0]
        if steps == 0:
            return
        keep = min(steps, self.ring)
        end = self.counts[slot] + steps
        index = torch.arange(end - keep, end, device=self.device) % self.ring
        self.keys[slot].index_copy_(0, index, keys[-keep:].to(KEY_DTYPE))
        self.words[slot].index_copy_(0, index, words[-keep:])
        self.counts[slot] = end
        self.lows[slot] = max(self.lows[slot], end - self.ring)
        self.fresh[slot] = False

    def append_one(self, slots: list[int], keys: Tensor, words: Tensor) -> None:
        """One pair for each of ``slots`` (distinct): ``keys [B, H]``, ``words [B]``."""
        ring = self.ring
        index = torch.tensor(slots, device=self.device)
        place = torch.tensor([self.counts[s] % ring for s in slots], device=self.device)
        self.keys.index_put_((index, place), keys.to(KEY_DTYPE))
        self.words.index_put_((index, place), words)
        for slot in slots:
            count = self.counts[slot] + 1
            self.counts[slot] = count
            self.lows[slot] = max(self.lows[slot], count - ring)
            self.fresh[slot] = False

    def attend(self, slots: list[int], queries: Tensor) -> tuple[Tensor, list[bool]]:
        """Each session's window weights for its query ``[B, H]`` (``[B, R]``, 0 outside
        the window) and whether its window holds a pair ``[B]``; kept as ``last_weights``."""
        keys = self.keys
        scores = torch.stack(
            [keys[slot].to(queries.dtype) @ q for slot, q in zip(slots, queries, strict=True)]
        )
        counts = [self.counts[s] for s in slots]
        window = self.params.window
        reach = [min(self.counts[s] - self.lows[s], window) for s in slots]
        bounds = torch.tensor([counts, reach], device=self.device).unsqueeze(2)  # [2, B, 1]
        ages = (bounds[0] - 1 - self.ring_index) % self.ring
        scores = scores.mul_(self.params.theta).masked_fill_(ages >= bounds[1], -math.inf)
        weights = scores.softmax(-1).nan_to_num_(0.0)  # an empty window: all zero
        self.last_weights.index_copy_(0, torch.tensor(slots, device=self.device), weights)
        has = [r > 0 for r in reach]
        for slot, filled in zip(slots, has, strict=True):
            self.fresh[slot] = True
            self.has[slot] = filled
        return weights, has

    def dump(self, slot: int) -> bytes:
        """The exact pairs of the ring (at most ``ring``), oldest first, with the count."""
        count = self.counts[slot]
        kept = count - self.lows[slot]
        index = torch.arange(count - kept, count, device=self.device) % self.ring
        keys = self.keys[slot].index_select(0, index).cpu().numpy().tobytes()
        words = self.words[slot].index_select(0, index).to(torch.int32).cpu().numpy().tobytes()
        return HEADER.pack(TAG, count, kept) + keys + words

    def load(self, slot: int, raw: bytes) -> None:
        """Write ``dump``'s bytes into ``slot`` (raises ``ValueError`` on a wrong layout)."""
        count, keys, words = parse(raw, self.hidden)
        kept = words.shape[0]
        if kept > count:
            raise ValueError("stored cache holds more pairs than its count")
        keep = min(kept, self.ring)
        self.counts[slot] = self.lows[slot] = count - keep
        self.fresh[slot] = False
        self.append(slot, keys[kept - keep :].to(self.device), words[kept - keep :].to(self.device))


def parse(raw: bytes, hidden: int) -> tuple[int, Tensor, Tensor]:
    """(pair count, keys ``[m, hidden]`` float16, words ``[m]`` int64) of ``dump``'s bytes."""
    if len(raw) < HEADER.size:
        raise ValueError("cache bytes shorter than their header")
    tag, count, kept = HEADER.unpack_from(raw)
    key_bytes = kept * hidden * 2
    if tag != TAG or len(raw) != HEADER.size + key_bytes + kept * 4:
        raise ValueError("cache bytes have an unexpected layout")
    if kept == 0:
        return count, torch.empty(0, hidden, dtype=KEY_DTYPE), torch.empty(0, dtype=torch.long)
    body = bytearray(raw[HEADER.size :])
    keys = torch.frombuffer(body, dtype=KEY_DTYPE, count=kept * hidden).view(kept, hidden)
    words = torch.frombuffer(body, dtype=torch.int32, offset=key_bytes, count=kept)
    if not bool(torch.isfinite(keys).all()):
        raise ValueError("cache bytes hold non-finite keys")
    return count, keys.clone(), words.to(torch.long)


def pool_for_card(
    card: dict[str, Any],
    hidden: int,
    history: int,
    max_bytes: int,
    device: torch.device,
    required: bool,
) -> CachePool | None:
    """The rings for a model whose card holds tuned cache numbers (``models.tune_cache``);
    None without them (then ``required``, the server's ``session_cache`` on, is an error)."""
    entry = card.get("continuous_cache")
    if not entry:
        if required:
            raise RuntimeError(
                "LSTM_SERVE_SESSION_CACHE=on, but the model's card holds no tuned "
                "continuous cache (python -m models.tune_cache)"
            )
        return None
    return CachePool(CacheParams.from_dict(entry), hidden, history, max_bytes, device)
