"""torch's default CPU matmul (MKL) against oneDNN with weights packed once
(``models.packed_linear``), on the bundled checkpoints' own weights, alternated in one
process:

- each product the serving step makes: the decoder (the default being the engine's own,
  ``models.vocab_projection``) and every layer's input and recurrent gate weights, with
  the decoder's largest log-prob difference from float64 on real hidden states;
- the whole one-word step (``models.lstm_step`` from the input gate table), both ways,
  with the largest difference of ``h``/``c``.

    python -m bench.micro.cpu_matmul_ab [--rounds 12] [--json out.json]

Medians of ``--rounds`` rounds of 5 calls, each variant in turn; one torch thread, as the
engine runs on a 2-CPU machine. Prints the CPU's model and instruction set, since the
ratio depends on them (MKL runs AVX2 on AMD CPUs).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch import Tensor

from bench.micro.cpu_step_ab import ROOT, alternated_ms, hidden_states, log_prob_error
from models import lstm_step
from models.checkpoint import load
from models.network import LanguageModel
from models.packed_linear import PackedLayers, PackedLinear
from models.vocab_projection import project

ROWS = (1, 4, 16, 64, 256)
STEP_ROWS = (1, 4, 25, 64)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def products(model_dir: Path, rounds: int) -> list[dict[str, object]]:
    """Each weight's product at ``ROWS`` rows, default against packed."""
    decoder, hidden = hidden_states(model_dir, max(ROWS))
    model: LanguageModel = load(model_dir, "cpu").model.eval()
    weights = {"decoder": (decoder.weight, decoder.bias)}
    for index, layer in enumerate(model.layers):
        for kind in ("ih", "hh"):
            weights[f"W_{kind} layer {index}"] = (
                getattr(layer, f"weight_{kind}_l0"),
                getattr(layer, f"bias_{kind}_l0"),
            )
    out = []
    with torch.inference_mode():
        for name, (weight, bias) in weights.items():
            packed = PackedLinear(weight, bias)
            for rows in ROWS:
                if name == "decoder":
                    x = hidden[:rows]
                    default = lambda x=x: project(decoder, x)  # noqa: E731
                else:
                    x = torch.randn(rows, weight.shape[1]) * 0.3
                    default = lambda x=x, w=weight, b=bias: torch.addmm(b, x, w.t())  # noqa: E731
                onednn = lambda x=x, p=packed: p(x)  # noqa: E731
                ms = alternated_ms({"default": default, "onednn": onednn}, rounds)
                row: dict[str, object] = {
                    "model": model_dir.name,
                    "weight": name,
                    "shape": list(weight.shape),
                    "rows": rows,
                    "default_ms": round(ms["default"], 3),
                    "onednn_ms": round(ms["onednn"], 3),
                    "speedup": round(ms["default"] / ms["onednn"], 2),
                    "max_difference": float((packed(x) - default()).abs().max()),
                }
                if name == "decoder":
                    exact = (x.double() @ weight.double().t() + bias.double()).log_softmax(-1)
                    row["default_logprob_error"] = log_prob_error(default(), exact)
                    row["onednn_logprob_error"] = log_prob_error(packed(x), exact)
                out.append(row)
    return out


def steps(model_dir: Path, rounds: int) -> list[dict[str, object]]:
    """The one-word step from the gate table, default against packed."""
    model: LanguageModel = load(model_dir, "cpu").model.eval()
    layers, width = model.layers, model.config.hidden_size
    table = lstm_step.input_gate_table(model.embedding, layers)
    packed = PackedLayers.of(layers)
    out = []
    with torch.inference_mode():
        for rows in STEP_ROWS:
            tokens = torch.randint(0, model.config.vocab_size, (rows,))
            h = torch.randn(len(layers), rows, width) * 0.3
            c = torch.randn(len(layers), rows, width) * 0.3

            def run(
                with_packed: PackedLayers | None, t: Tensor = tokens, h: Tensor = h, c: Tensor = c
            ) -> tuple:
                first = table.index_select(0, t)
                return lstm_step.lstm_step(layers, first, h, c, first, packed=with_packed)

            ms = alternated_ms(
                {"default": lambda: run(None), "onednn": lambda: run(packed)}, rounds
            )
            error = max(
                float((a - b).abs().max()) for a, b in zip(run(None), run(packed), strict=True)
            )
            out.append(
                {
                    "model": model_dir.name,
                    "hidden": width,
                    "rows": rows,
                    "default_ms": round(ms["default"], 3),
                    "onednn_ms": round(ms["onednn"], 3),
                    "speedup": round(ms["default"] / ms["onednn"], 2),
                    "max_state_difference": error,
                }
            )
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--models",
        type=Path,
        nargs="+",
        default=[ROOT / "models" / "default", ROOT / "models" / "medium"],
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    machine = f"{cpu_model()}, torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
    print(f"{machine}\n\nEach product: default (MKL) against oneDNN with a packed weight\n")
    print("| model | weight | rows | default ms | oneDNN ms | speed-up | max diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    product_rows = [row for model in args.models for row in products(model, args.rounds)]
    for r in product_rows:
        print(
            f"| {r['model']} | {r['weight']} {r['shape']} | {r['rows']} | {r['default_ms']} "
            f"| {r['onednn_ms']} | {r['speedup']}× | {r['max_difference']:.1e} |"
        )
    print("\nThe one-word step (gate table), default against packed\n")
    print("| model | H | rows | default ms | oneDNN ms | speed-up | max h/c diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    step_rows = [row for model in args.models for row in steps(model, args.rounds)]
    for r in step_rows:
        print(
            f"| {r['model']} | {r['hidden']} | {r['rows']} | {r['default_ms']} "
            f"| {r['onednn_ms']} | {r['speedup']}× | {r['max_state_difference']:.1e} |"
        )
    result = {"machine": machine, "products": product_rows, "steps": step_rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
