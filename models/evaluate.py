"""Perplexity as the papers compute it: the whole split as one stream, state carried.

python -m models.evaluate --checkpoint models/default --data ../shared/data/ptb --split test
python -m models.evaluate --checkpoint models/default --data ../shared/data/ptb --cache

With ``--cache`` the model's distribution is mixed with a continuous cache over the
stream's own recent top-layer outputs (``models.continuous_cache``), carried across
sentences; theta, lambda and the window come from the card (``python -m models.tune_cache``)
unless given.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional

from models.card import write_model_card
from models.checkpoint import load, read_config, update_card
from models.continuous_cache import KEY_DTYPE, CacheParams, segment_log_probs
from models.data import batchify, chunks, encode_file, split_path
from models.network import LanguageModel

CARD_CACHE_KEY = "continuous_cache"


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


@torch.inference_mode()
def cached_mean_nll(
    model: LanguageModel, stream: Tensor, params: CacheParams, bptt: int = 256
) -> float:
    """``mean_nll`` (batch 1) with the continuous cache: one stream, state and cache carried.

    Every prediction sees the ``params.window`` pairs ``(h_i, x_{i+1})`` before it, across
    chunk and sentence boundaries; keys are rounded to ``KEY_DTYPE`` as a server stores
    them. With ``params.lam == 0`` the result equals ``mean_nll(model, stream)`` exactly.
    """
    was_training = model.training
    model.eval()
    rows = batchify(stream, 1).to(model.embedding.weight.device)
    state = model.initial_state(1)
    keys = rows.new_empty(0, model.config.hidden_size, dtype=KEY_DTYPE)
    words = rows.new_empty(0)
    total, count = 0.0, 0
    for chunk in chunks(rows, bptt):
        hidden, state = model.hidden_states(chunk.inputs, state)
        logits = model.decoder(hidden)
        queries, targets = hidden[0], chunk.targets[0]
        log_probs = functional.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
        mixed = segment_log_probs(log_probs, queries, targets, keys, words, params)
        total += functional.nll_loss(mixed, targets, reduction="sum").item()
        count += targets.numel()
        keys = torch.cat([keys, queries.to(KEY_DTYPE)])[-params.window :]
        words = torch.cat([words, targets])[-params.window :]
    model.train(was_training)
    return total / count


def cache_params(args: argparse.Namespace) -> tuple[CacheParams, bool]:
    """The cache's numbers: the card's tuned ones, overridden by flags; and whether tuned."""
    tuned = read_config(args.checkpoint).get("card", {}).get(CARD_CACHE_KEY, {})
    flags = {"theta": args.cache_theta, "lambda": args.cache_lambda, "window": args.cache_window}
    merged = {**tuned, **{k: v for k, v in flags.items() if v is not None}}
    missing = [name for name in ("theta", "lambda", "window") if name not in merged]
    if missing:
        raise SystemExit(
            f"--cache: no tuned {', '.join(missing)} in {args.checkpoint}'s card; run "
            "python -m models.tune_cache or pass --cache-theta/--cache-lambda/--cache-window"
        )
    params = CacheParams.from_dict(merged)
    return params, bool(tuned) and params == CacheParams.from_dict(tuned)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="do not update the card")
    parser.add_argument("--cache", action="store_true", help="mix in the continuous cache")
    parser.add_argument("--cache-theta", type=float, help="scale of the dot products")
    parser.add_argument("--cache-lambda", type=float, help="weight of the cache distribution")
    parser.add_argument("--cache-window", type=int, help="cached (h_i, x_i+1) pairs")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    checkpoint = load(args.checkpoint, args.device)
    stream = encode_file(split_path(args.data, args.split), checkpoint.vocabulary)
    if not args.cache:
        perplexity = math.exp(mean_nll(checkpoint.model, stream))
        print(f"{args.split} perplexity {perplexity:.2f} ({stream.numel() - 1} tokens)")
        key = f"{args.split}_perplexity"
    else:
        params, tuned = cache_params(args)
        perplexity = math.exp(cached_mean_nll(checkpoint.model, stream, params))
        print(
            f"{args.split} perplexity with the cache {perplexity:.2f} "
            f"(theta {params.theta}, lambda {params.lam}, window {params.window}; "
            f"{stream.numel() - 1} tokens)"
        )
        key = f"{args.split}_perplexity_cache"
        if not tuned and not args.no_write:
            print("not written to the card: these are not the card's tuned cache settings")
            return
    if not args.no_write:
        update_card(args.checkpoint, **{key: round(perplexity, 2)})
        write_model_card(args.checkpoint)


if __name__ == "__main__":
    main()
