"""Experiment 2: every cell type on Penn Treebank at the same size and the same budget.

Each cell trains with the same recipe (Zaremba et al.'s small: 2 x 200, SGD, the same
epochs and learning-rate schedule, no time-based annealing) in its own process, all at
once; then each best checkpoint's valid and test perplexity is measured as the papers
do. Greff et al. (2015) found the LSTM variants about equal and the plain RNN behind.

    python -m experiments.ptb_cells --device cuda --out runs/cells \\
        --json docs/variants/ptb_cells.json --plot docs/variants/ptb_cells.png

``--report JSON`` redraws the table and plot from an earlier run's results.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load
from models.config import CELL_TYPES
from models.data import encode_file, split_path
from models.evaluate import mean_nll


def train_command(cell: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "models.train",
        "--recipe",
        args.recipe,
        "--cell",
        cell,
        "--epochs",
        str(args.epochs),
        "--data",
        str(args.data),
        "--out",
        str(args.out / cell),
        "--device",
        args.device,
        "--anneal-epochs",
        "0",
        "--max-time-s",
        str(args.max_time_s),
        "--model-id",
        f"ptb-{cell}-{args.recipe}",
        *(["--threads", str(args.threads)] if args.threads else []),
        *(["--lr", str(args.lr)] if args.lr else []),
    ]


def train_all(cells: list[str], args: argparse.Namespace) -> None:
    """Start every cell's training at once and wait for all of them."""
    args.out.mkdir(parents=True, exist_ok=True)
    running = []
    for cell in cells:
        log = (args.out / f"{cell}.log").open("w")
        running.append((cell, subprocess.Popen(train_command(cell, args), stdout=log, stderr=log)))
    for cell, process in running:
        code = process.wait()
        print(f"{cell}: training exited {code}", flush=True)


def measure(cell: str, args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = load(args.out / cell / "best", args.device)
    training = load(args.out / cell / "last").card["training"]  # the whole run's record
    perplexity = {
        split: math.exp(
            mean_nll(
                checkpoint.model, encode_file(split_path(args.data, split), checkpoint.vocabulary)
            )
        )
        for split in ("valid", "test")
    }
    return {
        "parameters": checkpoint.model.parameter_count(),
        "epochs": training["epochs"],
        "best_epoch": checkpoint.card["training"]["epochs"],
        "seconds": training["seconds"],
        "valid": round(perplexity["valid"], 2),
        "test": round(perplexity["test"], 2),
        "history": training["history"],
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        "| cell | parameters | epochs | train time (s) | valid ppl | test ppl |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cell, entry in results["cells"].items():
        valid, test = (
            (f"{entry[split]:.2f}" if entry[split] < DIVERGED else f"diverged ({entry[split]:.1e})")
            for split in ("valid", "test")
        )
        lines.append(
            f"| {cell} | {entry['parameters']:,} | {entry['epochs']} | {entry['seconds']:.0f} "
            f"| {valid} | {test} |"
        )
    return "\n".join(lines)


DIVERGED = 10_000.0  # a perplexity above this is a run that blew up, not a result


def plot(results: dict[str, Any], path: Path) -> None:
    """Test perplexity per cell (bars), diverged runs marked rather than drawn to scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(results["cells"])
    tests = [results["cells"][cell]["test"] for cell in cells]
    ceiling = 1.15 * max([t for t in tests if t < DIVERGED], default=100.0)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    bars = axes.bar(cells, [min(t, ceiling) for t in tests], color="tab:blue")
    for bar, test in zip(bars, tests, strict=True):
        diverged = test >= DIVERGED
        if diverged:
            bar.set_color("tab:red")
        axes.annotate(
            "diverged" if diverged else f"{test:.1f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axes.set_ylim(0, ceiling * 1.08)
    axes.set_ylabel("PTB test perplexity (lower is better)")
    epochs = {results["cells"][cell]["epochs"] for cell in cells}
    axes.set_title(
        f"Every cell at 2 x 200, recipe {results['args']['recipe']}, "
        f"{'/'.join(str(e) for e in sorted(epochs))} epoch(s)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", default=",".join(CELL_TYPES))
    parser.add_argument("--recipe", default="small")
    parser.add_argument("--epochs", type=int, default=13)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ptb"))
    parser.add_argument("--out", type=Path, default=Path("runs/cells"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads per training")
    parser.add_argument("--lr", type=float, help="override the recipe's learning rate")
    parser.add_argument(
        "--max-time-s", type=float, default=math.inf, help="stop a cell's training after this"
    )
    parser.add_argument("--report", type=Path, help="only redraw from this results JSON")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
    else:
        cells = args.cells.split(",")
        started = time.monotonic()
        train_all(cells, args)
        results = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "cells": {cell: measure(cell, args) for cell in cells},
            "seconds": round(time.monotonic() - started, 1),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        }
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
