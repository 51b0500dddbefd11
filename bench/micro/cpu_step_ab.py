"""The two parts of the engine's CPU step with and without their speed-ups, on the bundled
checkpoints, alternated in one process:

- the decoder's projection: one ``nn.Linear`` call against ``models.vocab_projection``'s
  vocabulary blocks, with each one's largest log-prob difference from float64 on the
  model's real hidden states (PTB valid);
- the one-word LSTM step (``models.lstm_step``): from the embedding against from the
  first layer's input gate table, with the largest difference of ``h``/``c``.

    python -m bench.micro.cpu_step_ab [--rounds 12] [--json out.json]

Each round times each variant over 5 calls, in turn, so both see the same machine; the
tables give the medians and the speed-up. One torch thread, as the engine runs on a
2-CPU machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from models import lstm_step
from models.checkpoint import load
from models.network import LanguageModel
from models.vocab_projection import project

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT.parent / "shared" / "data" / "ptb" / "ptb.valid.txt"
ROWS = (4, 25, 64, 256)


def timed_ms(call: Callable[[], object], calls: int = 5) -> float:
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


def alternated_ms(variants: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms per call of each variant, timed in turn ``rounds`` times."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        call()
    for _ in range(rounds):
        for name, call in variants.items():
            times[name].append(timed_ms(call))
    return {name: statistics.median(values) for name, values in times.items()}


def measure_step(model_dir: Path, rounds: int) -> list[dict[str, object]]:
    """The one-word step from embeddings against from the input gate table."""
    model: LanguageModel = load(model_dir, "cpu").model.eval()
    layers, hidden = model.layers, model.config.hidden_size
    table = lstm_step.input_gate_table(model.embedding, layers)
    out = []
    with torch.inference_mode():
        for rows in (1, 4, 25, 64):
            tokens = torch.randint(0, model.config.vocab_size, (rows,))
            h = torch.randn(len(layers), rows, hidden) * 0.3
            c = torch.randn(len(layers), rows, hidden) * 0.3

            def embedded(tokens: Tensor = tokens, h: Tensor = h, c: Tensor = c) -> tuple:
                return lstm_step.lstm_step(layers, model.embedding(tokens), h, c)

            def tabled(tokens: Tensor = tokens, h: Tensor = h, c: Tensor = c) -> tuple:
                first = table.index_select(0, tokens)
                return lstm_step.lstm_step(layers, first, h, c, first_gates=first)

            ms = alternated_ms({"embedding": embedded, "table": tabled}, rounds)
            error = max(
                float((a - b).abs().max()) for a, b in zip(embedded(), tabled(), strict=True)
            )
            out.append(
                {
                    "model": model_dir.name,
                    "hidden": hidden,
                    "rows": rows,
                    "embedding_ms": round(ms["embedding"], 2),
                    "table_ms": round(ms["table"], 2),
                    "speedup": round(ms["embedding"] / ms["table"], 2),
                    "max_state_difference": error,
                    "table_mb": round(table.numel() * table.element_size() / 1e6, 1),
                }
            )
    return out


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
            ms = alternated_ms(variants, rounds)
            linear, blocks = ms["linear"], ms["blocks"]
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
    decoder = [row for model in args.models for row in measure(model, args.rounds)]
    print("The decoder's projection\n")
    print(
        "| model | H | rows | nn.Linear ms | blocks ms | speed-up "
        "| log-prob error (linear / blocks) | bit-identical |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for r in decoder:
        print(
            f"| {r['model']} | {r['hidden']} | {r['rows']} | {r['linear_ms']} | {r['blocks_ms']} "
            f"| {r['speedup']}× | {r['linear_error']:.1e} / {r['blocks_error']:.1e} "
            f"| {r['bit_identical']} |"
        )
    step = [row for model in args.models for row in measure_step(model, args.rounds)]
    print("\nThe one-word LSTM step\n")
    print(
        "| model | H | rows | from embeddings ms | from the table ms | speed-up "
        "| max diff | table |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in step:
        print(
            f"| {r['model']} | {r['hidden']} | {r['rows']} | {r['embedding_ms']} | {r['table_ms']} "
            f"| {r['speedup']}× | {r['max_state_difference']:.1e} | {r['table_mb']} MB |"
        )
    if args.json:
        args.json.write_text(json.dumps({"decoder": decoder, "step": step}, indent=2) + "\n")


if __name__ == "__main__":
    main()
