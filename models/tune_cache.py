"""Tune the continuous cache's theta, lambda and window on a validation split.

python -m models.tune_cache --checkpoint models/default --data ../shared/data/ptb

The model runs over the split once (``stream_outputs``: each target's log-probability and
every top-layer output); each block of queries is then scored against its keys once and
every (theta, window, lambda) of the grid costs a masked softmax and a sum, not a model
run. The best setting on *valid* is re-measured exactly (``models.evaluate
.cached_mean_nll``) on valid and test and written to the card with both perplexities.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional

from models.card import write_model_card
from models.checkpoint import load, update_card
from models.continuous_cache import KEY_DTYPE, CacheParams, band_mask, masked_softmax
from models.data import batchify, chunks, encode_file, split_path
from models.evaluate import CARD_CACHE_KEY, cached_mean_nll
from models.network import LanguageModel

THETAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
LAMBDAS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
WINDOWS = (100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class StreamOutputs:
    """One model run over a stream ``[N]``, batch 1, state carried (``N - 1`` predictions).

    Attributes:
        target_log_probs: ``[N - 1]`` float32, log p_model(x_{t+1} | x_{<=t}).
        hidden: ``[N - 1, H]`` float32, the top-layer output ``h_t`` at each step.
        targets: ``[N - 1]`` int64, ``x_{t+1}``.
    """

    target_log_probs: Tensor
    hidden: Tensor
    targets: Tensor


@torch.inference_mode()
def stream_outputs(model: LanguageModel, stream: Tensor, bptt: int = 256) -> StreamOutputs:
    """Run ``model`` over ``stream`` ``[N]`` once, as ``cached_mean_nll`` does."""
    model.eval()
    rows = batchify(stream, 1).to(model.embedding.weight.device)
    state = model.initial_state(1)
    log_probs, hidden, targets = [], [], []
    for chunk in chunks(rows, bptt):
        outputs, state = model.hidden_states(chunk.inputs, state)
        logits = model.decoder(outputs)
        scores = functional.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
        log_probs.append(scores.gather(1, chunk.targets.reshape(-1, 1)).squeeze(1))
        hidden.append(outputs[0])
        targets.append(chunk.targets[0])
    return StreamOutputs(torch.cat(log_probs), torch.cat(hidden), torch.cat(targets))


@torch.inference_mode()
def target_cache_probs(
    outputs: StreamOutputs, thetas: list[float], windows: list[int], block: int = 256
) -> tuple[Tensor, Tensor]:
    """The cache's probability of each target for every theta and window.

    Returns:
        ``[len(thetas), len(windows), N - 1]`` float32 p_cache(x_{t+1}) and
        ``[len(windows), N - 1]`` bool (whether step t had any pair in its window).
    """
    hidden, targets = outputs.hidden, outputs.targets
    keys = hidden.to(KEY_DTYPE).to(hidden.dtype)  # as stored by a server
    steps, widest = targets.shape[0], max(windows)
    probs = hidden.new_zeros(len(thetas), len(windows), steps)
    has_cache = torch.zeros(len(windows), steps, dtype=torch.bool)
    for start in range(0, steps, block):
        stop = min(start + block, steps)
        history = min(start, widest)
        scores = hidden[start:stop] @ keys[start - history : stop].T  # [T, P + T]
        match = targets[start - history : stop].unsqueeze(0) == targets[start:stop].unsqueeze(1)
        for w, window in enumerate(windows):
            first = max(0, history - window)  # columns no step of this block can see
            valid = band_mask(stop - start, history, window)[:, first:]
            has_cache[w, start:stop] = valid.any(dim=1)
            hits = match[:, first:]
            for k, theta in enumerate(thetas):
                weights = masked_softmax(theta * scores[:, first:], valid)
                probs[k, w, start:stop] = (weights * hits).sum(dim=1)
    return probs, has_cache


def grid_nll(
    outputs: StreamOutputs, probs: Tensor, has_cache: Tensor, lambdas: list[float]
) -> Tensor:
    """Mean NLL (nats/token) for every (theta, window, lambda): ``[thetas, windows, lambdas]``."""
    model_lp = outputs.target_log_probs.double()
    cache_lp = probs.double().log()
    result = torch.empty(*probs.shape[:2], len(lambdas), dtype=torch.float64)
    for j, lam in enumerate(lambdas):
        mixed = torch.logaddexp(model_lp + math.log1p(-lam), cache_lp + math.log(lam))
        result[:, :, j] = -torch.where(has_cache, mixed, model_lp).mean(dim=-1)
    return result


def tune(
    outputs: StreamOutputs, thetas: list[float], windows: list[int], lambdas: list[float]
) -> tuple[CacheParams, Tensor]:
    """The grid's best setting (lowest mean NLL) and the whole grid of mean NLLs."""
    probs, has_cache = target_cache_probs(outputs, thetas, windows)
    nll = grid_nll(outputs, probs, has_cache, lambdas)
    k, w, j = (int(i) for i in torch.unravel_index(nll.argmin(), nll.shape))
    return CacheParams(theta=thetas[k], lam=lambdas[j], window=windows[w]), nll


def print_grid(nll: Tensor, thetas: list[float], windows: list[int], lambdas: list[float]) -> None:
    """Per window, the best theta and lambda and its perplexity."""
    for w, window in enumerate(windows):
        flat = nll[:, w, :]
        k, j = (int(i) for i in torch.unravel_index(flat.argmin(), flat.shape))
        print(
            f"window {window:5d}: best theta {thetas[k]}, lambda {lambdas[j]}: "
            f"valid perplexity {math.exp(flat[k, j].item()):.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--thetas", type=float, nargs="+", default=list(THETAS))
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS))
    parser.add_argument("--report", type=Path, help="write the whole grid here (JSON)")
    parser.add_argument("--no-write", action="store_true", help="do not update the card")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    checkpoint = load(args.checkpoint)
    valid = encode_file(split_path(args.data, "valid"), checkpoint.vocabulary)
    outputs = stream_outputs(checkpoint.model, valid)
    run_s = time.perf_counter() - started
    params, nll = tune(outputs, args.thetas, args.windows, args.lambdas)
    grid_s = time.perf_counter() - started - run_s
    print(f"model run over valid {run_s:.0f} s, grid of {nll.numel()} settings {grid_s:.0f} s")
    print_grid(nll, args.thetas, args.windows, args.lambdas)
    perplexities = {}
    for split in ("valid", "test"):
        stream = encode_file(split_path(args.data, split), checkpoint.vocabulary)
        perplexities[split] = round(math.exp(cached_mean_nll(checkpoint.model, stream, params)), 2)
    total_s = time.perf_counter() - started
    print(f"chosen {params.to_dict()}: {perplexities} ({total_s:.0f} s in all)")
    grid = {"theta": args.thetas, "lambda": args.lambdas, "window": args.windows}
    if args.report:
        report = {"grid": grid, "valid_nll": nll.tolist(), "chosen": params.to_dict()}
        args.report.write_text(json.dumps({**report, "perplexity": perplexities}, indent=1))
    if not args.no_write:
        tuned = {**params.to_dict(), "tuned_on": "valid", "grid": grid}
        update_card(
            args.checkpoint,
            **{CARD_CACHE_KEY: tuned},
            valid_perplexity_cache=perplexities["valid"],
            test_perplexity_cache=perplexities["test"],
        )
        write_model_card(args.checkpoint)


if __name__ == "__main__":
    main()
