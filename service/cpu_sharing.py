"""How the processes share the CPUs: API processes, and the engine's loop and torch threads.

The event loop (HTTP, WebSocket, JSON) runs Python and needs the GIL; the inference
thread runs torch ops, which release the GIL while they compute and must win it back
after each one. Two defaults follow from measurements on a 2-core machine (BENCHMARKS.md
§3, ``python -m bench.micro.gil_convoy``):

* the engine's torch threads get the CPUs the API processes leave
  (``Settings.engine_threads``);
* the GIL switch interval is 0.1 ms instead of CPython's 5 ms: with 5 ms, every op that
  finishes while the loop holds the GIL waits up to 5 ms to continue (the "convoy
  effect"), and a model step next to a busy loop ran 4x slower;
* the cyclic garbage collector runs less often (``tune_garbage_collector``).
"""

from __future__ import annotations

import gc
import os
import sys


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_gil_switch_interval(milliseconds: float) -> None:
    """How long a thread may hold the GIL while another waits (process-wide)."""
    sys.setswitchinterval(milliseconds / 1000.0)


GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Move what exists now (imports, the model, the app) out of the collector's sight
    and collect the young generation every 50,000 net allocations instead of 700.

    A serving process allocates a few objects per request and keeps long-lived ones per
    session; with CPython's defaults the cyclic collector runs every ~100 requests and
    re-walks the live sessions. Measured on the fork path (``bench.micro.fork_bench``,
    2-vCPU VM): 102-110 us of event-loop CPU per fork with the defaults, 72-94 us with
    these. Nothing here leaks: cycles are still found, just in larger batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
