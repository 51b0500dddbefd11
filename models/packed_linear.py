"""Serving matmuls on the CPU through oneDNN, with each weight laid out once.

Why: torch's CPU ``addmm``/``linear`` calls MKL, and MKL runs its AVX2 code on AMD
processors even where they have AVX-512. oneDNN (built into torch) dispatches on the
instruction set itself. With the weight reordered once for it (``_reorder_linear_weight``,
as inductor's CPU freezing does), oneDNN's product was 2.2-2.6x MKL's from 4 rows up for
every weight of both bundled models (AMD EPYC family 26 with AVX-512, 2 vCPUs, one torch
thread, torch 2.13; ``python -m bench.micro.cpu_matmul_ab``, BENCHMARKS §0.8):

=====================  ======  ======  =======  =======  ========
weight ``[out, in]``    1 row  4 rows  16 rows  64 rows  256 rows
=====================  ======  ======  =======  =======  ========
decoder 10000 x 650    2.15x   2.47x   2.33x    2.40x    2.34x
decoder 10000 x 200    1.29x   2.37x   2.30x    2.46x    2.45x
gates 2600 x 650       1.12x   2.4x    2.37x    2.24x    2.27x
gates 800 x 200        0.57x   1.3x    1.7x     2.06x    2.26x
=====================  ======  ======  =======  =======  ========

Elsewhere (an Intel CPU, where MKL runs AVX-512) the two may be even, so ``choose``
times both on the model's own decoder once, when serving starts, and keeps the faster.
Results are the same dot products summed in another order: within ~1e-5 of MKL's for
the 2 x 650 decoder's logits, the same distance both are from float64.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from models.vocab_projection import project

Kernel = Literal["auto", "onednn", "default"]
KERNELS: tuple[Kernel, ...] = ("auto", "onednn", "default")
PACK_ROWS = 64  # the batch size oneDNN lays the weight out for; any row count runs
# Below this many rows x hidden units the default kernels win on the gate products: one
# row of the 2 x 200 model's [800, 200] products took 0.011 ms with MKL, 0.020 with oneDNN
# (its per-call cost), so its one-word step was 0.68x at 1 row, 1.06x at 4, 1.49x at 25.
# For prompt rows (``packed_rows``) the bar is the same: nn.LSTM's C++ time loop wins
# below it (2 x 200, rows of 6-12 tokens: 1 row 0.54x, 4 rows 0.95x, 8 rows 1.25x, 64
# rows 1.86-1.89x; 2 x 650: 1.43x at 1 row, 2.35-2.65x at 4-64 rows; cpu_matmul_ab).
# The decoder gains from 1 row.
MIN_ROWS_TIMES_HIDDEN = 640
CALIBRATION_ROWS = 16
CALIBRATION_ROUNDS = 9


def available() -> bool:
    """Whether this torch has oneDNN's packed linear on the CPU."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class PackedLinear:
    """``x @ weight.T + bias`` for ``x`` ``[N, in]`` with oneDNN and a weight packed once.

    A copy: later changes to ``weight`` are not seen (pack again after loading weights).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        with torch.no_grad():
            self.weight = torch.ops.mkldnn._reorder_linear_weight(
                weight.detach().contiguous(), PACK_ROWS
            )
        self.bias = None if bias is None else bias.detach().contiguous()
        self.out_features, self.in_features = weight.shape

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), self.weight, self.bias, "none", [], ""
        )


@dataclass(frozen=True)
class PackedLayers:
    """Each LSTM layer's input and recurrent products (``W_ih``, ``b_ih``; ``W_hh``,
    ``b_hh``) packed for ``lstm_step``."""

    input: list[PackedLinear]
    hidden: list[PackedLinear]

    @classmethod
    def of(cls, layers: nn.ModuleList) -> PackedLayers:
        def packed(layer: nn.Module, kind: str) -> PackedLinear:
            weight, bias = getattr(layer, f"weight_{kind}_l0"), getattr(layer, f"bias_{kind}_l0")
            return PackedLinear(weight, bias)

        return cls([packed(x, "ih") for x in layers], [packed(x, "hh") for x in layers])


def _median_ms(calls: list[Callable[[], Tensor]]) -> list[float]:
    """Median ms of each call, timed in turn ``CALIBRATION_ROUNDS`` times (so that both
    see the same moments of a busy machine)."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(CALIBRATION_ROUNDS):
        for call, spent in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            spent.append(time.perf_counter() - started)
    return [1000 * statistics.median(spent) for spent in times]


def onednn_faster(linear: nn.Linear, rows: int = CALIBRATION_ROWS) -> tuple[bool, float, float]:
    """Time the decoder's default projection (``vocab_projection.project``) and its packed
    oneDNN twin on ``rows`` rows; returns (oneDNN faster, its median ms, the default's)."""
    packed = PackedLinear(linear.weight, linear.bias)
    x = torch.randn(rows, linear.in_features, dtype=linear.weight.dtype)
    with torch.inference_mode():
        default_ms, onednn_ms = _median_ms([lambda: project(linear, x), lambda: packed(x)])
    return onednn_ms < default_ms, onednn_ms, default_ms


def choose(kernel: Kernel, linear: nn.Linear) -> tuple[bool, str]:
    """Whether to serve with packed oneDNN weights, and why (for the start-up log)."""
    if kernel == "default" or linear.weight.device.type != "cpu":
        return False, "default kernels (asked for, or not on a CPU)"
    if not available():
        return False, "default kernels: this torch has no oneDNN packed linear"
    if kernel == "onednn":
        return True, "oneDNN packed weights (asked for)"
    faster, onednn_ms, default_ms = onednn_faster(linear)
    verdict = "oneDNN packed weights" if faster else "default kernels"
    return faster, (
        f"{verdict}: decoder at {CALIBRATION_ROWS} rows took {onednn_ms:.3f} ms with "
        f"oneDNN, {default_ms:.3f} ms with the default"
    )
