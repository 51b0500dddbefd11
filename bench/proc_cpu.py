"""CPU seconds of a process tree, per process, from /proc (Linux): what a benchmark's
server spent while the load ran, next to what its client spent.

    before = tree_cpu(server.process.pid)
    ...  # the load
    print(cpu_delta(before, tree_cpu(server.process.pid)))
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _process(pid: int) -> tuple[str, float] | None:
    """(name from its command line, user + system CPU seconds) or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
    words = [a.decode(errors="replace") for a in argv if a]
    name = " ".join(w.rsplit("/", 1)[-1] for w in words[:4])
    return name, cpu_s


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """{pid: (name, CPU seconds)} for ``root`` and every process below it."""
    found: dict[int, tuple[str, float]] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        info = _process(pid)
        if info is not None:
            found[pid] = info
            pending += _children(pid)
    return found


def cpu_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], elapsed_s: float
) -> dict[str, float]:
    """Per process ``"pid name"``: the share of one CPU it used between the two readings."""
    out: dict[str, float] = {}
    for pid, (name, cpu_s) in after.items():
        spent = cpu_s - before.get(pid, (name, 0.0))[1]
        out[f"{pid} {name}"] = round(spent / elapsed_s, 3)
    out["total"] = round(sum(out.values()), 3)
    return out
