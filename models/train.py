"""Train a word-level LSTM language model with truncated BPTT and SGD.

    python -m models.train --recipe default --data ../shared/data/ptb --out runs/default

Validates every epoch; ``OUT/best`` keeps the best checkpoint and ``OUT/last`` the
latest (``--resume OUT/last`` continues from it).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional

from models.averaging import WeightAverage
from models.checkpoint import Checkpoint, save
from models.data import chunks
from models.evaluate import mean_nll
from models.network import LanguageModel
from models.normalizer import Normalizer
from models.presets import Recipe
from models.progress import Progress
from models.train_cli import build_parser, parse_arguments
from models.train_setup import (
    Schedule,
    averaged_steps,
    build_model,
    load_data,
    pick_device,
    prepare_torch,
    resume_or_build,
    start_average,
    state_averaged,
)
from models.vocabulary import Vocabulary

# Set-up and command-line names stay importable from here, where they lived before the split.
__all__ = [
    "Run",
    "Schedule",
    "averaged_steps",
    "build_model",
    "build_parser",
    "load_data",
    "main",
    "next_lr",
    "parse_arguments",
    "pick_device",
    "prepare_torch",
    "resume_or_build",
    "run_epochs",
    "start_average",
    "state_averaged",
    "train_epoch",
]


def train_epoch(
    model: LanguageModel,
    rows: torch.Tensor,
    recipe: Recipe,
    lr: float,
    progress: Progress | None = None,
    average: WeightAverage | None = None,
) -> float:
    """One pass over ``rows`` ``[B, N]``; returns the mean training loss (nats/token)."""
    model.train()
    state = model.initial_state(rows.shape[0])
    total, count = 0.0, 0
    for steps, chunk in enumerate(chunks(rows, recipe.bptt), start=1):
        state = (state[0].detach(), state[1].detach())
        logits, state = model(chunk.inputs, state)
        loss = functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), chunk.targets.reshape(-1)
        )
        model.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-lr)
        if average is not None:
            average.update()
        total += loss.item() * chunk.targets.numel()
        count += chunk.targets.numel()
        if progress is not None:
            progress.update(steps, total / count, count)
    return total / count


def next_lr(recipe: Recipe, lr: float, epoch: int, improved: bool) -> float:
    if recipe.schedule == "zaremba":
        return lr / recipe.lr_decay if epoch >= recipe.decay_after_epoch else lr
    return lr if improved else lr / recipe.lr_decay


@dataclass
class Run:
    """What the epoch loop reads and does not change: the model, its data and the options."""

    args: argparse.Namespace
    recipe: Recipe
    device: torch.device
    model: LanguageModel
    vocabulary: Vocabulary
    normalizer: Normalizer
    model_id: str
    train_rows: torch.Tensor
    valid_stream: torch.Tensor
    average: WeightAverage | None
    averaged_from: int

    def evaluated(self) -> AbstractContextManager[object]:
        """Evaluate and keep the averaged weights when averaging, else the live ones."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()


def train_and_validate(run: Run, epoch: int, lr: float) -> tuple[float, float]:
    """One epoch of training at ``lr``, then validation: mean NLLs (nats/token)."""
    steps = math.ceil((run.train_rows.shape[1] - 1) / run.recipe.bptt)
    progress = Progress(steps, f"epoch {epoch}/{run.recipe.epochs} lr {lr:.4g}")
    train_nll = train_epoch(run.model, run.train_rows, run.recipe, lr, progress, run.average)
    progress.close()
    with run.evaluated():
        valid_nll = mean_nll(run.model, run.valid_stream)
    return train_nll, valid_nll


def training_card(run: Run, epoch: int, schedule: Schedule, seconds: float) -> dict[str, Any]:
    """The checkpoint card after ``epoch``: what resuming needs, and where it was trained."""
    args, average = run.args, run.average
    return {
        "training": {
            "recipe": args.recipe,
            "hyperparameters": run.recipe.to_dict(),
            "epochs": epoch,
            "lr": schedule.lr,
            "best_valid_nll": schedule.best_valid,
            "seconds": round(seconds, 1),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "device": str(run.device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "data": str(args.data.name),
            "history": schedule.history,
            "averaged_from_epoch": (
                run.averaged_from if average is not None else state_averaged(args.resume)
            ),
        },
        "data": {"name": args.data.name, "normalizer": run.normalizer.kind},
    }


def lr_after(
    run: Run, lr: float, epoch: int, improved: bool, remaining_s: float, epoch_s: float
) -> float:
    """The next epoch's rate; fixed while averaging, annealed early when time runs out."""
    if run.average is not None:
        return lr
    lr = next_lr(run.recipe, lr, epoch, improved)
    if remaining_s < run.args.anneal_epochs * epoch_s and improved:
        lr = lr / run.recipe.lr_decay  # out of time: anneal now rather than never
    return lr


def save_epoch(run: Run, card: dict[str, Any], improved: bool, valid_nll: float) -> None:
    """``OUT/last`` always; ``OUT/best`` (evaluated weights, with its perplexity) if improved."""
    out = run.args.out
    save(Checkpoint(run.model, run.vocabulary, run.normalizer, run.model_id, card), out / "last")
    if improved:
        card = {**card, "valid_perplexity": round(math.exp(valid_nll), 2)}
        with run.evaluated():
            save(
                Checkpoint(run.model, run.vocabulary, run.normalizer, run.model_id, card),
                out / "best",
            )


def run_epochs(run: Run, schedule: Schedule, started: float) -> None:
    """Train, validate and save each epoch until the recipe's last, or ``--max-time-s``."""
    for epoch in range(schedule.start_epoch, run.recipe.epochs + 1):
        epoch_start = time.monotonic()
        train_nll, valid_nll = train_and_validate(run, epoch, schedule.lr)
        improved = valid_nll < schedule.best_valid
        seconds = schedule.elapsed_before + time.monotonic() - started
        epoch_seconds = time.monotonic() - epoch_start
        print(
            f"epoch {epoch}: train ppl {math.exp(train_nll):.2f} valid ppl "
            f"{math.exp(valid_nll):.2f} lr {schedule.lr:.4g} {epoch_seconds:.0f}s "
            f"{'(best)' if improved else ''}",
            flush=True,
        )
        schedule.best_valid = min(schedule.best_valid, valid_nll)
        schedule.history.append([epoch, schedule.lr, round(math.exp(valid_nll), 2)])
        card = training_card(run, epoch, schedule, seconds)
        remaining = run.args.max_time_s - (time.monotonic() - started)
        schedule.lr = lr_after(run, schedule.lr, epoch, improved, remaining, epoch_seconds)
        card["training"]["lr"] = schedule.lr  # the rate the next epoch (or a resume) starts at
        save_epoch(run, card, improved, valid_nll)
        if remaining < epoch_seconds:
            print(f"time budget reached after epoch {epoch}", flush=True)
            break


def main(argv: list[str] | None = None) -> None:
    """Parse, build or resume, load the data, then train epoch by epoch (module docstring)."""
    args, recipe = parse_arguments(argv, __doc__)
    device = prepare_torch(args, recipe)
    normalizer = Normalizer(kind=args.normalizer, lowercase=args.normalizer == "ptb")
    model, vocabulary, schedule = resume_or_build(args, recipe, device)
    train_rows, valid_stream = load_data(args.data, vocabulary, recipe.batch_size, device)
    model_id = args.model_id or args.out.name
    started = time.monotonic()
    print(
        f"{model_id}: {model.parameter_count():,} parameters, {len(vocabulary):,} words, "
        f"{train_rows.numel():,} training tokens, device {device}",
        flush=True,
    )
    average, averaged_from = start_average(
        args, model, train_rows, recipe, device, schedule.start_epoch
    )
    run = Run(
        args=args,
        recipe=recipe,
        device=device,
        model=model,
        vocabulary=vocabulary,
        normalizer=normalizer,
        model_id=model_id,
        train_rows=train_rows,
        valid_stream=valid_stream,
        average=average,
        averaged_from=averaged_from,
    )
    run_epochs(run, schedule, started)


if __name__ == "__main__":
    main()
