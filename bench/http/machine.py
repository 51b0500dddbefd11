"""The machine a benchmark ran on (CPU, torch, wrk, load) and the open-files limit it needs.

Kept apart from the orchestrator because ``bench.http.targets`` records the same machine
facts for its own runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
        torch_version: str | None = torch.__version__
    except ImportError:  # pragma: no cover
        torch_threads = torch_version = None
    wrk_version = ""
    if shutil.which("wrk"):
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        wrk_version = (
            (proc.stdout + proc.stderr).strip().splitlines()[0]
            if (proc.stdout + proc.stderr).strip()
            else ""
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "torch_threads": torch_threads,
        "torch_version": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": wrk_version,
        "loadavg_at_start": list(load) if load else None,
        "server_threads_env": os.environ.get("LSTM_SERVE_THREADS", ""),
    }


def raise_nofile(want: int) -> dict[str, int]:
    """Raise the soft open-files limit towards ``want`` (children inherit it)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": int(soft), "hard": int(hard)}
