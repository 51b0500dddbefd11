"""Training tokens/s (small and medium recipes) and one decode step's time vs batch size.

python -m bench.micro.model_speed --json bench/results/model_speed.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from bench.json_out import write_result
from models.checkpoint import load
from models.config import ModelConfig
from models.network import LanguageModel
from models.presets import RECIPES


def training_tokens_per_s(recipe_name: str, steps: int, vocab: int = 10_000) -> float:
    recipe = RECIPES[recipe_name]
    config = ModelConfig(
        vocab,
        recipe.embedding_size,
        recipe.hidden_size,
        recipe.num_layers,
        recipe.tied,
        dropout_input=recipe.dropout_input,
        dropout_hidden=recipe.dropout_hidden,
        dropout_output=recipe.dropout_output,
        weight_drop=recipe.weight_drop,
    )
    model = LanguageModel(config).train()
    tokens = torch.randint(0, vocab, (recipe.batch_size, recipe.bptt + 1))
    state = model.initial_state(recipe.batch_size)
    timings = []
    for step in range(steps + 2):
        started = time.perf_counter()
        logits, state = model(tokens[:, :-1], (state[0].detach(), state[1].detach()))
        loss = functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(parameter.grad, alpha=-0.1)
        if step >= 2:
            timings.append(time.perf_counter() - started)
    return recipe.batch_size * recipe.bptt / statistics.median(timings)


@torch.inference_mode()
def step_ms(model: LanguageModel, batch: int, repeats: int) -> float:
    tokens = torch.randint(0, model.config.vocab_size, (batch, 1))
    state = model.initial_state(batch)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        hidden, _ = model.hidden_states(tokens, state)
        torch.log_softmax(model.decoder(hidden[:, -1]), -1)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--batches", default="1,4,16,64,256,1024")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "training": {},
        "decode": [],
    }
    for name in ("default", "small", "medium"):
        rate = training_tokens_per_s(name, args.train_steps)
        out["training"][name] = rate
        print(f"training {name:8}: {rate:8,.0f} tokens/s", flush=True)
    model = load(args.model).model
    for batch in (int(b) for b in args.batches.split(",")):
        ms = step_ms(model, batch, 30)
        out["decode"].append({"batch": batch, "step_ms": ms, "rows_per_s": batch / ms * 1e3})
        print(
            f"decode step batch {batch:5}: {ms:8.3f} ms  ({batch / ms * 1e3:10,.0f} rows/s)",
            flush=True,
        )
    write_result(args.json, out)


if __name__ == "__main__":
    main()
