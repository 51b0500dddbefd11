"""Zeroed tensors made on a helper thread before the state pool (or cache) has to grow.

Growing the pool (``StatePool.ensure_capacity``) makes bigger ``h``/``c`` tensors and
copies the old ones in, on the inference thread, between two steps: every session waits.
Nearly all of that time is the kernel handing out and zeroing fresh pages, not the copy.
So the pool asks for the next size while it is nearly full, a daemon thread makes the
tensors (torch releases the GIL while it zeroes), and the growth itself only copies: the
bundled model's pool grown to 132,859 slots stops the engine 33-101 ms instead of
163-196, to 298,932 slots 78-83 ms instead of 363-418 (``python -m
bench.micro.pool_growth``, BENCHMARKS §0.9). The sessions' continuous caches
(``CachePool``) grow the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from torch import Tensor

from service.engine.native_names import name_this_thread

Tensors = tuple[Tensor, ...]


class SpareTensors:
    """At most one set of tensors, made ahead for a given number of slots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: Tensors | None = None
        self._size = 0  # slots of the set being made or made (0: none asked for)
        self._thread: threading.Thread | None = None

    def request(self, make: Callable[[int], Tensors], slots: int) -> None:
        """Start making ``make(slots)`` unless a set of that many slots or more is
        already made or under way."""
        with self._lock:
            if self._size >= slots:
                return
            self._size, self._ready = slots, None  # a smaller set would be dropped anyway
            self._thread = threading.Thread(
                target=self._make, args=(make, slots), name="pool-spare", daemon=True
            )
            self._thread.start()

    def _make(self, make: Callable[[int], Tensors], slots: int) -> None:
        name_this_thread("pool-spare")
        tensors = make(slots)
        with self._lock:
            if self._size == slots:  # not overtaken by a bigger request or a take
                self._ready = tensors

    def take(self, slots: int) -> Tensors | None:
        """The made set if it holds at least ``slots`` slots, waiting for it if it is
        still being made (it has a head start on making it again); None when there is
        none, or it is too small: then it is dropped and the caller grows the slow way."""
        with self._lock:
            pending = self._ready is None and self._size >= slots
            thread = self._thread if pending else None
        if thread is not None:
            thread.join()
        with self._lock:
            tensors, self._ready = self._ready, None
            made, self._size = self._size, 0  # one under way is dropped when it is done
            if tensors is None:
                return None
            return tensors if made >= slots else None
