"""The report's PNG plots: throughput vs connections and p99 vs throughput.

matplotlib is imported only when plotting, so the tables never depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Series = list[tuple[str, list[dict[str, Any]]]]  # (legend label, wrk levels)


def _series(doc: dict[str, Any]) -> Series:
    """The wrk series that were measured: predict batching on/off, and the echo app."""
    predict = doc["parts"].get("predict") or {}
    echo = doc["parts"].get("echo") or {}
    series: Series = []
    if "error" not in predict:
        for tag, label in (
            ("batching_on", "predict, batching on"),
            ("batching_off", "predict, batching off"),
        ):
            if tag in predict:
                series.append((label, predict[tag]["levels"]))
    if "error" not in echo and "levels" in echo:
        series.append(("echo app (HTTP ceiling)", echo["levels"]))
    return series


def _throughput(plt: Any, series: Series, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, levels in series:
        pts = [(r["connections"], r["rps"]) for r in levels if r.get("rps")]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # the echo ceiling is often 10x the model's throughput
    ax.set_xlabel("wrk connections")
    ax.set_ylabel("requests/s (log)")
    ax.set_title("POST /v1/predict throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(plt: Any, series: Series, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, levels in series:
        measured = [r for r in levels if r.get("rps") and r["latency_ms"].get("p99")]
        pts = [(r["rps"], r["latency_ms"]["p99"]) for r in measured]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
            for r in measured:
                ax.annotate(
                    str(r["connections"]),
                    (r["rps"], r["latency_ms"]["p99"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_yscale("log")
    ax.set_xlabel("requests/s")
    ax.set_ylabel("p99 latency (ms, wrk)")
    ax.set_title("p99 vs throughput (labels: connections)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(doc: dict[str, Any], out: Path) -> list[str]:
    """``throughput.png`` (req/s vs connections) and ``latency.png`` (p99 vs req/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(doc)
    if not series:
        return []
    _throughput(plt, series, out / "throughput.png")
    _latency(plt, series, out / "latency.png")
    return ["throughput.png", "latency.png"]
