"""Rewrite a checkpoint with its weights stored at another width.

    python -m models.convert runs/medium/best models/medium --storage float16

Half-width storage halves the file (a 2 x 650 model fits the repository's 30 MB per file)
while the server still computes in float32; re-run ``models.evaluate`` on the result so
its card carries the perplexity of the weights actually shipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.checkpoint import STORAGE_DTYPES, load, save


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--storage", default="float16", choices=sorted(STORAGE_DTYPES))
    args = parser.parse_args(argv)
    checkpoint = load(args.source)
    save(checkpoint, args.destination, storage_dtype=args.storage)
    size = (args.destination / "model.safetensors").stat().st_size
    print(f"{args.destination}: {args.storage} weights, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
