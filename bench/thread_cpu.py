"""Per-thread CPU and run-queue wait of a process tree over an interval, from /proc
(Linux): which thread of which server process spends the cores, and which one waits for
one. Threads are shown by their kernel names (the engine names its own: ``inference``,
``pool-spare``; processes ``lstm-engine``, ``lstm-api-<pid>``).

    python -m bench.thread_cpu --pid "$(pgrep -of 'python -m service')" --seconds 8

"run" is the share of one CPU a thread ran (``schedstat``), "wait" the share of the
interval it was ready to run but waited for a CPU; the sum of "run" is the tree's cores.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.json_out import write_result
from bench.proc_cpu import tree_cpu

Key = tuple[int, int, str]  # pid, tid, thread name


@dataclass
class ThreadShare:
    pid: int
    tid: int
    name: str
    run: float  # share of one CPU spent running
    wait: float  # share of the interval spent runnable, waiting for a CPU


def _threads(pids: list[int]) -> dict[Key, tuple[float, float]]:
    """{(pid, tid, name): (run seconds, run-queue seconds)} from each task's schedstat."""
    out: dict[Key, tuple[float, float]] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
            out[(pid, int(task.name), name)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def measure(root: int, seconds: float) -> list[ThreadShare]:
    """Every thread of ``root``'s tree that ran over the next ``seconds``, busiest first."""
    pids = list(tree_cpu(root))
    before, started = _threads(pids), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = _threads(pids), time.perf_counter() - started
    shares = [
        ThreadShare(*key, (run - before[key][0]) / elapsed, (wait - before[key][1]) / elapsed)
        for key, (run, wait) in after.items()
        if key in before
    ]
    return sorted((s for s in shares if s.run or s.wait), key=lambda s: -s.run)


def table(shares: list[ThreadShare], min_run: float = 0.005) -> str:
    lines = [f"{'pid':>7} {'tid':>7} {'thread':<16} {'run':>6} {'wait':>6}"]
    for s in shares:
        if s.run >= min_run:
            lines.append(f"{s.pid:>7} {s.tid:>7} {s.name:<16} {s.run:6.3f} {s.wait:6.3f}")
    lines.append(f"{'':>7} {'':>7} {'total':<16} {sum(s.run for s in shares):6.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="the tree's root process")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path, help="also write the shares here")
    args = parser.parse_args()
    if not os.path.exists(f"/proc/{args.pid}/task"):
        parser.error(f"no process {args.pid} (Linux /proc needed)")
    shares = measure(args.pid, args.seconds)
    print(table(shares))
    write_result(args.json, [asdict(s) for s in shares])


if __name__ == "__main__":
    main()
