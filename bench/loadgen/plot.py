"""``--plot``: latency against achieved throughput, one point per sweep level.

Latency-vs-throughput is the curve that shows a server's capacity: flat while the server
keeps up, then a knee where queueing starts and p99 climbs steeply for little extra
throughput. Plotting against *achieved* (not offered) throughput keeps overload honest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.loadgen.stats import TOTAL


def plot_sweep(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Write a PNG with p50 and p99 (ms, log scale) vs achieved requests/s of ``total``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    # In level order, not sorted by x: past saturation throughput can fall back while
    # latency keeps rising, and the line should show that hook.
    points = [
        (r["ops"][TOTAL]["throughput_rps"] or 0.0, r) for r in results if r["ops"][TOTAL]["ok"] > 0
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xs = [x for x, _ in points]
    for key, style in (("p50", "o-"), ("p99", "s--")):
        ax.plot(xs, [r["ops"][TOTAL]["latency_ms"][key] for _, r in points], style, label=key)
    for x, r in points:
        level = f"{r['rate']:g}/s" if r["mode"] == "open" else f"c={r['concurrency']}"
        ax.annotate(
            level,
            (x, r["ops"][TOTAL]["latency_ms"]["p99"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(3, 4),
        )
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
