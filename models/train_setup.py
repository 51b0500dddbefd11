"""Everything a training run needs before its first epoch: device, model, data, schedule.

A new run builds the model and vocabulary from the recipe and the training text; a resumed
one reads them, and where its schedule stood, back from ``OUT/last``. Kept apart from the
epoch loop (``models.train``) so that the loop only trains, validates and saves.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.averaging import WeightAverage
from models.checkpoint import load
from models.config import ModelConfig
from models.data import batchify, encode_file, read_lines, split_path
from models.network import LanguageModel
from models.presets import Recipe
from models.vocabulary import Vocabulary


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def state_averaged(resume: Path | None) -> int | None:
    """The epoch from which a resumed run's weights are an average, if they are."""
    if resume is None:
        return None
    return load(resume).card.get("training", {}).get("averaged_from_epoch")


def averaged_steps(card: dict, steps_per_epoch: int) -> int:
    """How many iterates the averaged weights of a checkpoint's card are the mean of."""
    training = card["training"]
    return steps_per_epoch * (training["epochs"] - training["averaged_from_epoch"] + 1) + 1


@dataclass
class Schedule:
    """Where training stands between epochs; a resumed run reads it back from OUT/last."""

    lr: float
    start_epoch: int = 1
    best_valid: float = math.inf
    elapsed_before: float = 0.0
    history: list[list[float]] = field(default_factory=list)  # [epoch, lr, valid ppl] each


def prepare_torch(args: argparse.Namespace, recipe: Recipe) -> torch.device:
    """Threads and seed before any model is built, so a run is repeatable."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(recipe.seed)
    return pick_device(args.device)


def build_model(recipe: Recipe, vocabulary: Vocabulary, device: torch.device) -> LanguageModel:
    """A fresh model of the recipe's architecture, initialised as the recipe says."""
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
    return model


def resume_or_build(
    args: argparse.Namespace, recipe: Recipe, device: torch.device
) -> tuple[LanguageModel, Vocabulary, Schedule]:
    """The model, its vocabulary and the schedule: from ``--resume``'s checkpoint, or new
    (the vocabulary then built from the training text)."""
    if args.resume:
        resumed = load(args.resume, device)
        state = resumed.card["training"]
        schedule = Schedule(
            lr=args.lr or state["lr"],
            start_epoch=state["epochs"] + 1,
            best_valid=state["best_valid_nll"],
            elapsed_before=state["seconds"],
            history=list(state.get("history", [])),
        )
        return resumed.model, resumed.vocabulary, schedule
    vocabulary = Vocabulary.from_corpus(read_lines(split_path(args.data, "train")))
    return build_model(recipe, vocabulary, device), vocabulary, Schedule(lr=recipe.lr)


def load_data(
    data: Path, vocabulary: Vocabulary, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows ``[batch_size, N]`` on ``device`` and the validation token stream."""
    train_rows = batchify(encode_file(split_path(data, "train"), vocabulary), batch_size).to(device)
    return train_rows, encode_file(split_path(data, "valid"), vocabulary)


def start_average(
    args: argparse.Namespace,
    model: LanguageModel,
    train_rows: torch.Tensor,
    recipe: Recipe,
    device: torch.device,
    start_epoch: int,
) -> tuple[WeightAverage | None, int]:
    """With ``--average``: the running weight average (extending ``--average-from``'s if
    given) and the epoch it runs from; without it, ``None``."""
    if not args.average:
        return None, start_epoch
    if args.average_from is None:
        return WeightAverage(model), start_epoch
    previous = load(args.average_from, device)
    steps_per_epoch = math.ceil((train_rows.shape[1] - 1) / recipe.bptt)
    count = averaged_steps(previous.card, steps_per_epoch)
    averaged_from = previous.card["training"]["averaged_from_epoch"]
    print(f"extending the average of {count:,} iterates from epoch {averaged_from}")
    return WeightAverage.continuing(model, previous.model, count), averaged_from
