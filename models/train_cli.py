"""The command line of ``python -m models.train``: its options and the recipe they override.

Apart from the training loop so that the loop reads a finished ``Recipe`` and never an
option; the usage text itself stays ``models.train``'s docstring, passed in.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

from models.config import CELL_TYPES
from models.presets import RECIPES, Recipe


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The options; ``description`` is the usage text shown by ``--help``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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


def parse_arguments(
    argv: list[str] | None, description: str | None = None
) -> tuple[argparse.Namespace, Recipe]:
    """The options, and the recipe with the command line's overrides applied.

    With ``--resume``, ``--lr`` is not the recipe's starting rate but the rate from now on.
    """
    args = build_parser(description).parse_args(argv)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": None if args.resume else args.lr,
        "seed": args.seed,
        "cell": args.cell,
    }
    recipe = replace(RECIPES[args.recipe], **{k: v for k, v in overrides.items() if v is not None})
    return args, recipe
