"""One token through a stack of plain ``nn.LSTM`` layers: two matmuls and the gates.

On the CPU, ``nn.LSTM`` hands a one-step call to oneDNN, which re-lays the weights out on
every call: for the 2 x 650 model that costs ~10 ms per call whatever the batch (one row:
13.8 ms, against 4.0 ms here; 25 rows: 17.7 against 12.2; 64 rows: 26.8 against 19.1;
2-vCPU VM, one torch thread). Decode steps (session feeds, generation, prompts that the
prefix cache cut to one word) are exactly such calls, and so are steps whose rows are at
most two tokens (``LanguageModel._short_rows``: one step, then one over the two-token
rows). From ~128 rows up oneDNN's batched kernel is as fast or faster, so without the gate
table below larger batches keep ``nn.LSTM``; longer sequences and other devices always do.
The two agree to within ~6e-6 (float32 summation order).

A served model's first layer sees only embedding rows, so its input gates can be read
from a table of every word's ``embedding @ W_ih.T + b_ih`` (``input_gate_table``, built
once when serving starts) instead of being multiplied out at every step: one of the
step's four matmuls becomes a row gather: 1.3-1.4x at 1-64 rows, for a table of 104 MB
for the 2 x 650 model (32 MB for the bundled 2 x 200); results agree to ~1e-6. With the
table the step beats ``nn.LSTM`` at every batch size measured, so ``MAX_ROWS`` does not
bound it (one step, 2 x 650: 256 rows 54.8 ms against 64.2; 1,024 rows 218 against 269;
2 x 200: 256 rows 5.3 against 7.3; 2,048 rows 57 against 64).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from models.packed_linear import MIN_ROWS_TIMES_HIDDEN, PackedLayers

MAX_ROWS = 64  # above this, nn.LSTM (oneDNN) is as fast or faster without the gate table


def plain_stack(layers: nn.ModuleList) -> bool:
    """Whether every layer is a plain one-layer ``nn.LSTM`` (biases, no projection)."""
    return all(
        type(layer) is nn.LSTM
        and layer.num_layers == 1
        and layer.bias
        and not layer.bidirectional
        and layer.proj_size == 0
        for layer in layers
    )


def applies(layers: nn.ModuleList, x: Tensor, tabled: bool = False) -> bool:
    """Whether ``lstm_step`` can stand in for these layers on this input ``[B, ...]``;
    ``tabled``: the first layer's gates come from ``input_gate_table`` (any batch size)."""
    if x.device.type != "cpu" or (x.shape[0] > MAX_ROWS and not tabled):
        return False
    return plain_stack(layers)


def input_gate_table(embedding: nn.Embedding, layers: nn.ModuleList) -> Tensor:
    """Every word's first-layer input gates ``embedding @ W_ih.T + b_ih``, ``[V, 4H]``."""
    w_ih, b_ih = (cast(Tensor, getattr(layers[0], name)) for name in ("weight_ih_l0", "bias_ih_l0"))
    return torch.addmm(b_ih, embedding.weight, w_ih.t())


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(h, c)`` after one step, from the summed gates ``[N, 4H]`` (i, f, g, o) and ``c``."""
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f).mul_(c).addcmul_(torch.sigmoid(i), torch.tanh(g))
    return torch.sigmoid(o).mul_(torch.tanh(c)), c


def lstm_step(
    layers: nn.ModuleList,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    first_gates: Tensor | None = None,
    packed: PackedLayers | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The top layer's output ``[B, H]`` and the new ``h``, ``c`` ``[layers, B, H]`` after
    one token whose embedding is ``x`` ``[B, E]``. ``first_gates`` ``[B, 4H]``, when given,
    are the first layer's input gates already (rows gathered from ``input_gate_table``,
    which this adds to in place) and ``x`` is not read. ``packed``: the layers' weights
    packed for oneDNN (``packed_linear``), used instead of ``addmm`` where the batch is
    wide enough to pay for oneDNN's per-call cost."""
    if packed is not None and h0.shape[1] * h0.shape[2] < MIN_ROWS_TIMES_HIDDEN:
        packed = None
    h_out, c_out = [], []
    for index, layer in enumerate(layers):
        w_ih, w_hh, b_ih, b_hh = (
            cast(Tensor, getattr(layer, name))
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        )
        if index == 0 and first_gates is not None:
            gates = first_gates
        elif packed is not None:
            gates = packed.input[index](x)
        else:
            gates = torch.addmm(b_ih, x, w_ih.t())
        if packed is not None:
            gates.add_(packed.hidden[index](h0[index]))
        else:
            gates.addmm_(h0[index], w_hh.t()).add_(b_hh)
        x, c = lstm_cell(gates, c0[index])
        h_out.append(x)
        c_out.append(c)
    return x, torch.stack(h_out), torch.stack(c_out)
