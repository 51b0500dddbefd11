"""The decoder's projection, one ``nn.Linear`` call against ``models.vocab_projection``'s
vocabulary blocks, on the bundled checkpoints' own decoders, alternated in one process.

    python -m bench.micro.vocab_projection_ab [--rounds 12] [--json out.json]

Each round times each variant over 5 calls, in turn, so both see the same machine; the
table gives the medians, the speed-up (one call ÷ blocks) and the largest log-prob
difference of each variant from float64 on the model's real hidden states (PTB valid).
One torch thread, as the engine runs on a 2-CPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from models.checkpoint import load
from models.vocab_projection import project

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT.parent / "shared" / "data" / "ptb" / "ptb.valid.txt"
ROWS = (4, 25, 64, 256)


def timed_ms(call: Callable[[], Tensor], calls: int = 5) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1000


def hidden_states(model_dir: Path, count: int) -> tuple[torch.nn.Linear, Tensor]:
    """The decoder and ``count`` real top-layer vectors from running PTB valid."""
    checkpoint = load(model_dir, "cpu")
    model = checkpoint.model.eval()
    words = TEXT.read_text().split()[: count + 1]
    ids = torch.tensor([checkpoint.vocabulary.encode(words)])
    with torch.inference_mode():
        hidden, _ = model.hidden_states(ids)
    return model.decoder, hidden[0, :count].contiguous()


def log_prob_error(logits: Tensor, exact: Tensor) -> float:
    """As the engine normalises: minus ``logsumexp`` (``log_softmax`` is less exact)."""
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    return float((log_probs.double() - exact).abs().max())


def measure(model_dir: Path, rounds: int) -> list[dict[str, object]]:
    decoder, hidden = hidden_states(model_dir, max(ROWS))
    out = []
    with torch.inference_mode():
        weight, bias = decoder.weight.double(), decoder.bias.double()
        for rows in ROWS:
            x = hidden[:rows]
            exact = (x.double() @ weight.t() + bias).log_softmax(-1)
            variants = {"linear": lambda x=x: decoder(x), "blocks": lambda x=x: project(decoder, x)}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for call in variants.values():
                call()
            for _ in range(rounds):
                for name, call in variants.items():
                    times[name].append(timed_ms(call))
            linear, blocks = (statistics.median(times[name]) for name in ("linear", "blocks"))
            out.append(
                {
                    "model": model_dir.name,
                    "hidden": decoder.in_features,
                    "rows": rows,
                    "linear_ms": round(linear, 2),
                    "blocks_ms": round(blocks, 2),
                    "speedup": round(linear / blocks, 2),
                    "linear_error": log_prob_error(decoder(x), exact),
                    "blocks_error": log_prob_error(project(decoder, x), exact),
                    "bit_identical": bool(torch.equal(decoder(x), project(decoder, x))),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        type=Path,
        nargs="+",
        default=[ROOT / "models" / "default", ROOT / "models" / "medium"],
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for model in args.models for row in measure(model, args.rounds)]
    print(
        "| model | H | rows | nn.Linear ms | blocks ms | speed-up "
        "| log-prob error (linear / blocks) | bit-identical |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['hidden']} | {r['rows']} | {r['linear_ms']} | {r['blocks_ms']} "
            f"| {r['speedup']}× | {r['linear_error']:.1e} / {r['blocks_error']:.1e} "
            f"| {r['bit_identical']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
