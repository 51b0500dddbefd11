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
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional

from models.averaging import WeightAverage
from models.checkpoint import Checkpoint, load, save
from models.config import CELL_TYPES, ModelConfig
from models.data import batchify, chunks, encode_file, read_lines, split_path
from models.evaluate import mean_nll
from models.network import LanguageModel
from models.normalizer import Normalizer
from models.presets import RECIPES, Recipe
from models.progress import Progress
from models.vocabulary import Vocabulary


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def state_averaged(resume: Path | None) -> int | None:
    """The epoch from which a resumed run's weights are an average, if they are."""
    if resume is None:
        return None
    return load(resume).card.get("training", {}).get("averaged_from_epoch")


def averaged_steps(card: dict, steps_per_epoch: int) -> int:
    """How many iterates the averaged weights of a checkpoint's card are the mean of."""
    training = card["training"]
    return steps_per_epoch * (training["epochs"] - training["averaged_from_epoch"] + 1) + 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ptb"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--normalizer", default="ptb", choices=["ptb", "whitespace"])
    parser.add_argument("--cell", choices=CELL_TYPES, help="recurrent cell (default: recipe's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="learning rate (with --resume: from now on)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--max-time-s",
        type=float,
        default=math.inf,
        help="stop after this long; the last epochs anneal the rate",
    )
    parser.add_argument(
        "--anneal-epochs",
        type=int,
        default=3,
        help="with --max-time-s: decay every epoch once this few remain",
    )
    parser.add_argument("--resume", type=Path, help="an OUT/last checkpoint to continue")
    parser.add_argument(
        "--average",
        action="store_true",
        help="evaluate and keep the running average of the weights (NT-ASGD); lr stays fixed",
    )
    parser.add_argument(
        "--average-from",
        type=Path,
        help="with --average and --resume: a checkpoint of averaged weights (OUT/best of an "
        "--average run) whose running mean this run extends",
    )
    parser.add_argument("--model-id", help="id served by the API (default: OUT's name)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    recipe = RECIPES[args.recipe]
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": None if args.resume else args.lr,
        "seed": args.seed,
        "cell": args.cell,
    }
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(recipe.seed)
    device = pick_device(args.device)
    normalizer = Normalizer(kind=args.normalizer, lowercase=args.normalizer == "ptb")
    start_epoch, lr, best_valid, elapsed_before = 1, recipe.lr, math.inf, 0.0
    history: list[list[float]] = []  # [epoch, lr, valid perplexity] of every epoch
    if args.resume:
        resumed = load(args.resume, device)
        model, vocabulary = resumed.model, resumed.vocabulary
        state = resumed.card["training"]
        start_epoch, lr = state["epochs"] + 1, args.lr or state["lr"]
        best_valid, elapsed_before = state["best_valid_nll"], state["seconds"]
        history = list(state.get("history", []))
    else:
        vocabulary = Vocabulary.from_corpus(read_lines(split_path(args.data, "train")))
        config = ModelConfig(
            vocab_size=len(vocabulary),
            embedding_size=recipe.embedding_size,
            hidden_size=recipe.hidden_size,
            num_layers=recipe.num_layers,
            tied=recipe.tied,
            cell=recipe.cell,
            dropout_input=recipe.dropout_input,
            dropout_hidden=recipe.dropout_hidden,
            dropout_output=recipe.dropout_output,
            weight_drop=recipe.weight_drop,
        )
        model = LanguageModel(config)
        model.reset_parameters(recipe.init_range)
        model.to(device)
    train_rows = batchify(
        encode_file(split_path(args.data, "train"), vocabulary), recipe.batch_size
    ).to(device)
    valid_stream = encode_file(split_path(args.data, "valid"), vocabulary)
    model_id = args.model_id or args.out.name
    started = time.monotonic()
    print(
        f"{model_id}: {model.parameter_count():,} parameters, {len(vocabulary):,} words, "
        f"{train_rows.numel():,} training tokens, device {device}",
        flush=True,
    )
    epoch_seconds = 0.0
    average = WeightAverage(model) if args.average else None
    averaged_from = start_epoch
    if average is not None and args.average_from is not None:
        previous = load(args.average_from, device)
        steps_per_epoch = math.ceil((train_rows.shape[1] - 1) / recipe.bptt)
        count = averaged_steps(previous.card, steps_per_epoch)
        average = WeightAverage.continuing(model, previous.model, count)
        averaged_from = previous.card["training"]["averaged_from_epoch"]
        print(f"extending the average of {count:,} iterates from epoch {averaged_from}")
    evaluated = average.swapped_in if average is not None else contextlib.nullcontext
    for epoch in range(start_epoch, recipe.epochs + 1):
        epoch_start = time.monotonic()
        steps = math.ceil((train_rows.shape[1] - 1) / recipe.bptt)
        progress = Progress(steps, f"epoch {epoch}/{recipe.epochs} lr {lr:.4g}")
        train_nll = train_epoch(model, train_rows, recipe, lr, progress, average)
        progress.close()
        with evaluated():
            valid_nll = mean_nll(model, valid_stream)
        improved = valid_nll < best_valid
        seconds = elapsed_before + time.monotonic() - started
        epoch_seconds = time.monotonic() - epoch_start
        print(
            f"epoch {epoch}: train ppl {math.exp(train_nll):.2f} valid ppl "
            f"{math.exp(valid_nll):.2f} lr {lr:.4g} {epoch_seconds:.0f}s "
            f"{'(best)' if improved else ''}",
            flush=True,
        )
        best_valid = min(best_valid, valid_nll)
        history.append([epoch, lr, round(math.exp(valid_nll), 2)])
        card = {
            "training": {
                "recipe": args.recipe,
                "hyperparameters": recipe.to_dict(),
                "epochs": epoch,
                "lr": lr,
                "best_valid_nll": best_valid,
                "seconds": round(seconds, 1),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "device": str(device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "data": str(args.data.name),
                "history": history,
                "averaged_from_epoch": (
                    averaged_from if average is not None else state_averaged(args.resume)
                ),
            },
            "data": {"name": args.data.name, "normalizer": normalizer.kind},
        }
        remaining = args.max_time_s - (time.monotonic() - started)
        if average is None:
            lr = next_lr(recipe, lr, epoch, improved)
            if remaining < args.anneal_epochs * epoch_seconds and improved:
                lr = lr / recipe.lr_decay  # out of time: anneal now rather than never
        card["training"]["lr"] = lr
        checkpoint = Checkpoint(model, vocabulary, normalizer, model_id, card)
        save(checkpoint, args.out / "last")
        if improved:
            card = {**card, "valid_perplexity": round(math.exp(valid_nll), 2)}
            with evaluated():
                save(Checkpoint(model, vocabulary, normalizer, model_id, card), args.out / "best")
        if remaining < epoch_seconds:
            print(f"time budget reached after epoch {epoch}", flush=True)
            break


if __name__ == "__main__":
    main()
