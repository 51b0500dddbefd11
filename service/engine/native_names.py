"""The kernel's name for the calling thread, so that ``top -H``, ``ps -L``, py-spy and
``/proc/<pid>/task/*/comm`` tell the inference thread from the event loop.

Python threads stay "python" to the kernel (CPython names them only from 3.14 on), and
the per-thread CPU figures of the benchmarks (``bench.thread_cpu``) are read by those
names. Linux only; elsewhere, or if ``prctl`` is missing, nothing happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)
PR_SET_NAME = 15
MAX_BYTES = 15  # the kernel's TASK_COMM_LEN, less the terminating zero


def name_this_thread(name: str) -> None:
    """Set the calling thread's kernel name (cut to 15 bytes); the process's own name
    when called from its main thread."""
    if not sys.platform.startswith("linux"):
        return
    raw = name.encode("ascii", "replace")[:MAX_BYTES]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)


def set_this_thread_nice(nice: int) -> str | None:
    """Give the calling thread (only it: Linux schedules threads one by one) the nice
    value ``nice``; the reason as text if the system refused (below the current value
    needs CAP_SYS_NICE), else None."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as error:
        return f"refused: {error}"
    return None


def prepare_this_thread(name: str, nice: int = 0) -> None:
    """Name the calling thread and, when ``nice`` is not 0, give it that nice value; a
    refusal is logged (the thread runs on at its priority)."""
    name_this_thread(name)
    refused = set_this_thread_nice(nice) if nice else None
    if refused:
        log.warning("%s thread kept its priority: nice %d %s", name, nice, refused)
