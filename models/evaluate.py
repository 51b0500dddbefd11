"""Perplexity as the papers compute it: the whole split as one stream, state carried.

python -m models.evaluate --checkpoint models/default --data ../shared/data/ptb --split test
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional

from models.checkpoint import load, update_card
from models.data import batchify, chunks, encode_file, split_path
from models.network import LanguageModel


@torch.inference_mode()
def mean_nll(model: LanguageModel, stream: Tensor, batch_size: int = 1, bptt: int = 256) -> float:
    """Mean negative log-likelihood (nats/token) of ``stream`` ``[N]``, predicting N-1 tokens.

    With ``batch_size`` 1 (the default) every token but the first is scored given all
    before it, exactly as Zaremba et al. report perplexity.
    """
    was_training = model.training
    model.eval()
    rows = batchify(stream, batch_size).to(model.embedding.weight.device)
    state = model.initial_state(batch_size)
    total, count = 0.0, 0
    for chunk in chunks(rows, bptt):
        logits, state = model(chunk.inputs, state)
        loss = functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), chunk.targets.reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += chunk.targets.numel()
    model.train(was_training)
    return total / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="do not update the card")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    checkpoint = load(args.checkpoint, args.device)
    stream = encode_file(split_path(args.data, args.split), checkpoint.vocabulary)
    nll = mean_nll(checkpoint.model, stream)
    perplexity = math.exp(nll)
    print(f"{args.split} perplexity {perplexity:.2f} ({stream.numel() - 1} tokens)")
    if not args.no_write:
        update_card(args.checkpoint, **{f"{args.split}_perplexity": round(perplexity, 2)})


if __name__ == "__main__":
    main()
