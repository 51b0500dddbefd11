"""Experiment 1: can each cell carry one token across T distracting steps?

Each sequence is ``key, d_1 .. d_T, query`` where the key is one of ``--keys`` words, the
d_i are random distractor words and the target after ``query`` is the key. Every cell
gets the same parameter count (hidden sizes solved for it) and the same budget (steps,
batch, optimiser, initialisation); we report accuracy on fresh sequences for each T.

Gated cells start with their carry gate leaning open (``--gate-bias``: the forget gate's
bias for the LSTMs, the update gate's for the GRU), the usual initialisation (Gers et al.
2000, Jozefowicz et al. 2015); the plain RNN has no gate to bias.

    python -m experiments.long_dependency --jobs 8 --json docs/variants/long_dependency.json \
        --plot docs/variants/long_dependency.png
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from models.config import CELL_TYPES, ModelConfig
from models.network import LanguageModel


def make_batch(
    batch: int, gap: int, keys: int, distractors: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[B, gap + 2]`` and targets ``[B]``; ids: keys, then distractors, then query."""
    key = torch.randint(0, keys, (batch,), generator=generator)
    noise = torch.randint(keys, keys + distractors, (batch, gap), generator=generator)
    query = torch.full((batch, 1), keys + distractors)
    return torch.cat([key[:, None], noise, query], dim=1), key


def parameters(cell: str, hidden: int, vocab: int, embedding: int) -> int:
    config = ModelConfig(vocab, embedding, hidden, num_layers=1, tied=False, cell=cell)
    return LanguageModel(config).parameter_count()


def hidden_for_budget(cell: str, budget: int, vocab: int, embedding: int) -> int:
    """The largest hidden size whose model has at most ``budget`` parameters."""
    hidden = 1
    while parameters(cell, hidden + 1, vocab, embedding) <= budget:
        hidden += 1
    return hidden


def carry_gate_bias(model: LanguageModel, value: float) -> None:
    """Set the bias of each layer's carry gate (the gate that keeps the old state) to
    ``value``: the LSTMs' forget gate, the GRU's update gate; the RNN has none."""
    cell, hidden = model.config.cell, model.config.hidden_size
    with torch.no_grad():
        for layer in model.layers:
            if cell == "lstm":  # nn.LSTM gates (i, f, g, o), two bias vectors
                layer.bias_ih_l0[hidden : 2 * hidden] = value
                layer.bias_hh_l0[hidden : 2 * hidden] = 0.0
            elif cell == "gru":  # nn.GRU gates (r, z, n); h = (1 - z) n + z h
                layer.rnn.bias_ih_l0[hidden : 2 * hidden] = value
                layer.rnn.bias_hh_l0[hidden : 2 * hidden] = 0.0
            elif cell == "lstm_peephole":  # (i, f, g, o)
                layer.bias_l0[hidden : 2 * hidden] = value
            elif cell == "lstm_cifg":  # (f, g, o)
                layer.bias_l0[:hidden] = value


def train_and_test(cell: str, hidden: int, gap: int, args: argparse.Namespace) -> float:
    vocab = args.keys + args.distractors + 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = LanguageModel(
        ModelConfig(vocab, args.embedding, hidden, num_layers=1, tied=False, cell=cell)
    )
    carry_gate_bias(model, args.gate_bias)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        tokens, target = make_batch(args.batch, gap, args.keys, args.distractors, generator)
        tokens, target = tokens.to(device), target.to(device)
        hidden_states, _ = model.hidden_states(tokens)
        loss = functional.cross_entropy(model.decoder(hidden_states[:, -1]), target)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    model.eval()
    test = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        tokens, target = make_batch(args.test_size, gap, args.keys, args.distractors, test)
        tokens, target = tokens.to(device), target.to(device)
        hidden_states, _ = model.hidden_states(tokens)
        predicted = model.decoder(hidden_states[:, -1]).argmax(-1)
    return float((predicted == target).float().mean())


def _run(run: tuple[str, int, int, argparse.Namespace]) -> float:
    cell, hidden, gap, args = run
    started = time.monotonic()
    accuracy = train_and_test(cell, hidden, gap, args)
    print(f"  {cell} T={gap}: {accuracy:.3f} ({time.monotonic() - started:.0f}s)", flush=True)
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gaps", default="5,10,20,50,100,200")
    parser.add_argument("--cells", default=",".join(CELL_TYPES))
    parser.add_argument("--budget", type=int, default=20_000, help="parameters per model")
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--distractors", type=int, default=8)
    parser.add_argument("--embedding", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gate-bias", type=float, default=1.0, help="carry-gate bias at start")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="(cell, T) runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="only combine these results JSONs (same T)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    if args.merge:
        write(merge([json.loads(path.read_text()) for path in args.merge]), args)
        return
    gaps = [int(g) for g in args.gaps.split(",")]
    cells = args.cells.split(",")
    vocab = args.keys + args.distractors + 1
    results: dict[str, Any] = {"args": vars(args) | {"json": None, "plot": None}, "cells": {}}
    hidden = {cell: hidden_for_budget(cell, args.budget, vocab, args.embedding) for cell in cells}
    runs = [(cell, hidden[cell], gap, args) for cell in cells for gap in gaps]
    started = time.monotonic()
    longest_first = sorted(range(len(runs)), key=lambda index: -runs[index][2])
    accuracy = [0.0] * len(runs)
    if args.jobs > 1:
        # spawn: a forked child cannot use CUDA; the parent never touches the device
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            done = pool.map(_run, [runs[index] for index in longest_first])
            for index, value in zip(longest_first, done, strict=True):
                accuracy[index] = value
    else:
        for index in longest_first:
            accuracy[index] = _run(runs[index])
    print(f"{'cell':14} {'hidden':>6} {'params':>7} " + " ".join(f"T={g:<5}" for g in gaps))
    for index, cell in enumerate(cells):
        row = accuracy[index * len(gaps) : (index + 1) * len(gaps)]
        results["cells"][cell] = {
            "hidden": hidden[cell],
            "accuracy": row,
            "parameters": parameters(cell, hidden[cell], vocab, args.embedding),
        }
        print(
            f"{cell:14} {hidden[cell]:6} {results['cells'][cell]['parameters']:7} "
            + " ".join(f"{a:7.3f}" for a in row),
            flush=True,
        )
    results["seconds"] = round(time.monotonic() - started, 1)
    results["gaps"] = gaps
    write(results, args)


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of different cells with the same settings (e.g. per device)."""
    merged = {**parts[0], "cells": {}, "devices": {}}
    for part in parts:
        if part["gaps"] != merged["gaps"]:
            raise ValueError("results with different T cannot be merged")
        merged["cells"].update(part["cells"])
        merged["devices"].update({cell: part["args"]["device"] for cell in part["cells"]})
    return merged


def write(results: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot, 1 / results["args"]["keys"])


def plot(results: dict[str, Any], path: Path, chance: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4))
    for cell, entry in results["cells"].items():
        axes.plot(
            results["gaps"], entry["accuracy"], marker="o", label=f"{cell} (h={entry['hidden']})"
        )
    axes.axhline(chance, color="grey", linestyle=":", label="chance")
    axes.set_xscale("log")
    axes.set_xlabel("distance T between the key and the question (steps)")
    axes.set_ylabel("accuracy")
    axes.set_title("Remembering one token across T distractors, equal parameters")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
