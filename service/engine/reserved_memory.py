"""Zero CPU tensors whose pages exist only once written: the state pool reserves address
space for its largest size up front, so it grows by counting more slots as in use, never
by a copy.

Why: a growth of a pool in ordinary tensors copies every state on the inference thread,
and every session waits. With the next tensors zeroed ahead (``SpareTensors``) that was
still 33-101 ms at 132,859 slots and ~80 ms at 298,932 (BENCHMARKS §0.9); 100,000
WebSocket sessions with 32-token histories hold 3.4 million slots (11 GB for the bundled
model), whose growths would copy gigabytes. An anonymous private mapping is zero-filled
by the kernel one page at a time, at first touch, and only touched pages count towards
the process's memory and a container's limit. ``MAP_NORESERVE`` keeps Linux's default
overcommit heuristic from refusing a reservation larger than the machine's memory.
"""

from __future__ import annotations

import math
import mmap
import platform
import sys

import torch
from torch import Tensor

# Linux's MAP_NORESERVE where Python does not name it (3.11): 0x4000 on x86-64 and arm64.
_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0)
if not _NORESERVE and platform.machine().lower() in {"x86_64", "amd64", "aarch64", "arm64"}:
    _NORESERVE = 0x4000


def reserved_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor | None:
    """A zero tensor of ``shape`` in a fresh anonymous mapping, or None where there is
    none to have (not Linux, or the kernel refused: strict overcommit, address space).
    The mapping lives as long as the tensor or any view of it."""
    if not sys.platform.startswith("linux"):
        return None
    count = math.prod(shape)
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE
    try:
        area = mmap.mmap(-1, nbytes, flags=flags)
    except (OSError, OverflowError, ValueError):
        return None
    return torch.frombuffer(area, dtype=dtype, count=count).view(shape)
