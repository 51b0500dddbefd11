"""torch's default CPU matmul (MKL) against oneDNN with weights packed once
(``models.packed_linear``), on the bundled checkpoints' own weights, alternated in one
process:

- each product the serving step makes: the decoder (the default being the engine's own,
  ``models.vocab_projection``) and every layer's input and recurrent gate weights, with
  the decoder's largest log-prob difference from float64 on real hidden states;
- the whole one-word step (``models.lstm_step`` from the input gate table), both ways,
  with the largest difference of ``h``/``c``;
- a step's results from ``[R, 10000]`` logits: ``logsumexp`` + ``topk`` against one
  ``log_softmax`` + the two-level top-k (``service.engine.top_k``);
- prompt rows of T/2-T tokens: ``nn.LSTM`` on packed rows (the engine's default path),
  ``models.packed_rows``, and ``nn.LSTM`` on a padded batch (what the peers run; not
  usable by the engine, whose rows end at their own lengths).

    python -m bench.micro.cpu_matmul_ab [--rounds 12] [--json out.json]

Medians of ``--rounds`` rounds of 5 calls, each variant in turn; one torch thread, as the
engine runs on a 2-CPU machine. Prints the CPU's model and instruction set, since the
ratio depends on them (MKL runs AVX2 on AMD CPUs).
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.json_out import write_result
from bench.micro.cpu_step_ab import ROOT, alternated_ms, hidden_states, log_prob_error
from models import lstm_step
from models.checkpoint import load
from models.network import LanguageModel
from models.packed_linear import PackedLayers, PackedLinear
from models.packed_rows import packed_rows
from models.vocab_projection import project
from service.engine.top_k import log_norm, top_k

ROWS = (1, 4, 16, 64, 256)
STEP_ROWS = (1, 4, 25, 64)
PROMPTS = ((1, 12), (4, 12), (8, 12), (16, 12), (64, 12), (64, 40))  # (rows, longest)


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


def results(rounds: int) -> list[dict[str, object]]:
    """Top-5 and log-sum-exp of ``[R, V]`` logits, as the step took them and as it takes them."""
    out = []
    with torch.inference_mode():
        for rows in (25, 64, 256):
            logits = torch.randn(rows, 10_000) * 3

            def before(x: Tensor = logits) -> tuple:
                norm = x.logsumexp(-1, keepdim=True)
                values, ids = x.topk(5, -1)
                return values - norm, ids

            def after(x: Tensor = logits) -> tuple:
                log_probs = torch.log_softmax(x, -1)
                values, ids = top_k(log_probs, 5)
                return values, ids, log_norm(x, log_probs)

            ms = alternated_ms({"before": before, "after": after}, rounds)
            out.append(
                {
                    "rows": rows,
                    "logsumexp_topk_ms": round(ms["before"], 3),
                    "log_softmax_two_level_ms": round(ms["after"], 3),
                    "speedup": round(ms["before"] / ms["after"], 2),
                    "same_ids": bool(torch.equal(before()[1], after()[1])),
                }
            )
    return out


def prompts(model_dir: Path, rounds: int) -> list[dict[str, object]]:
    """Prompt rows through ``nn.LSTM`` (packed and padded) against ``packed_rows``."""
    model: LanguageModel = load(model_dir, "cpu").model.eval()
    model.prepare_for_serving("default")  # the gate table; nn.LSTM for prompts
    table, packed = model.input_gates, PackedLayers.of(model.layers)
    assert table is not None
    generator = torch.Generator().manual_seed(0)
    out = []
    with torch.inference_mode():
        for rows, longest in PROMPTS:
            lengths = torch.randint(longest // 2, longest + 1, (rows,), generator=generator)
            lengths[0] = longest
            tokens = torch.randint(0, model.config.vocab_size, (rows, longest))
            state = model.initial_state(rows)
            spans = lengths.tolist()

            def lstm(t: Tensor = tokens, n: list = spans, s: tuple = state) -> tuple:
                return model.packed_hidden_states(t, n, s)

            def ours(t: Tensor = tokens, n: list = spans, s: tuple = state) -> tuple:
                return packed_rows(table, packed, t, n, s)

            def padded(t: Tensor = tokens) -> tuple:
                return model.hidden_states(t)

            ms = alternated_ms({"lstm": lstm, "packed_rows": ours, "padded": padded}, rounds)
            (a, (h_a, _)), (b, (h_b, _)) = lstm(), ours()
            difference = max(float((a - b).abs().max()), float((h_a - h_b).abs().max()))
            out.append(
                {
                    "model": model_dir.name,
                    "rows": rows,
                    "longest": longest,
                    "nn_lstm_ms": round(ms["lstm"], 3),
                    "packed_rows_ms": round(ms["packed_rows"], 3),
                    "padded_nn_lstm_ms": round(ms["padded"], 3),
                    "speedup": round(ms["lstm"] / ms["packed_rows"], 2),
                    "max_difference": difference,
                }
            )
    return out


def print_table(
    title: str,
    headers: list[str],
    align: str,
    rows: list[dict[str, Any]],
    cells: Callable[[dict[str, Any]], list[object]],
) -> None:
    """A markdown table under ``title``; ``align`` has an ``l`` or ``r`` per column."""
    print(f"\n{title}\n")
    print("| " + " | ".join(headers) + " |")
    print("| " + " | ".join("---:" if side == "r" else "---" for side in align) + " |")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in cells(row)) + " |")


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
    print(machine)
    product_rows = [row for model in args.models for row in products(model, args.rounds)]
    print_table(
        "Each product: default (MKL) against oneDNN with a packed weight",
        ["model", "weight", "rows", "default ms", "oneDNN ms", "speed-up", "max diff"],
        "llrrrrr",
        product_rows,
        lambda r: [
            r["model"],
            f"{r['weight']} {r['shape']}",
            r["rows"],
            r["default_ms"],
            r["onednn_ms"],
            f"{r['speedup']}×",
            f"{r['max_difference']:.1e}",
        ],
    )
    step_rows = [row for model in args.models for row in steps(model, args.rounds)]
    print_table(
        "The one-word step (gate table), default against packed",
        ["model", "H", "rows", "default ms", "oneDNN ms", "speed-up", "max h/c diff"],
        "lrrrrrr",
        step_rows,
        lambda r: [
            r["model"],
            r["hidden"],
            r["rows"],
            r["default_ms"],
            r["onednn_ms"],
            f"{r['speedup']}×",
            f"{r['max_state_difference']:.1e}",
        ],
    )
    result_rows = results(args.rounds)
    print_table(
        "A step's results: logsumexp + topk against log_softmax + two-level top-k",
        ["rows", "logsumexp + topk ms", "log_softmax + two-level ms", "speed-up", "same ids"],
        "rrrrl",
        result_rows,
        lambda r: [
            r["rows"],
            r["logsumexp_topk_ms"],
            r["log_softmax_two_level_ms"],
            f"{r['speedup']}×",
            r["same_ids"],
        ],
    )
    prompt_rows = [row for model in args.models for row in prompts(model, args.rounds)]
    print_table(
        "Prompt rows of T/2-T tokens: nn.LSTM packed (and padded) against packed_rows",
        [
            "model",
            "rows",
            "T",
            "nn.LSTM ms",
            "packed_rows ms",
            "speed-up",
            "padded nn.LSTM ms",
            "max diff",
        ],
        "lrrrrrrr",
        prompt_rows,
        lambda r: [
            r["model"],
            r["rows"],
            r["longest"],
            r["nn_lstm_ms"],
            r["packed_rows_ms"],
            f"{r['speedup']}×",
            r["padded_nn_lstm_ms"],
            f"{r['max_difference']:.1e}",
        ],
    )
    result = {
        "machine": machine,
        "products": product_rows,
        "steps": step_rows,
        "results": result_rows,
        "prompts": prompt_rows,
    }
    write_result(args.json, result, indent=2)
    return result


if __name__ == "__main__":
    main()
