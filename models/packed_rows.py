"""Rows of different lengths through a stack of plain LSTM layers, with oneDNN's products.

Why: on a CPU where oneDNN beats MKL (``models.packed_linear``), ``nn.LSTM`` still runs
MKL for prompts of several tokens, and that was half the time of the 2 x 650 model's
prompt steps. Here each layer takes its input gates for every position at once (the
first layer's from the gate table, the others' in one packed product over all valid
positions), then walks time, each step one packed recurrent product over the rows still
going. Rows keep ``pack_padded_sequence``'s time-major layout: sorted longest first, step
``t`` holds the first ``batch_sizes[t]`` rows, so padding costs nothing. Results agree
with ``nn.LSTM``'s to ~3e-6 (float32 summation order; BENCHMARKS §0.8).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models.lstm_step import lstm_cell
from models.packed_linear import PackedLayers, PackedLinear

State = tuple[Tensor, Tensor]


def run_layer(
    input_gates: Tensor, batch_sizes: list[int], recurrent: PackedLinear, h: Tensor, c: Tensor
) -> Tensor:
    """One layer over packed positions: ``input_gates`` ``[P, 4H]`` (time-major), ``h``,
    ``c`` ``[B, H]`` in sorted row order, updated in place to each row's last state.
    Returns the layer's outputs ``[P, H]`` in the same layout."""
    out = input_gates.new_empty(input_gates.shape[0], h.shape[1])
    start = 0
    for n in batch_sizes:
        gates = recurrent(h[:n]).add_(input_gates[start : start + n])
        h_n, c_n = lstm_cell(gates, c[:n])
        h[:n], c[:n] = h_n, c_n
        out[start : start + n] = h_n
        start += n
    return out


def packed_rows(
    table: Tensor,
    packed: PackedLayers,
    tokens: Tensor,
    lengths: list[int],
    state: State,
) -> tuple[Tensor, State]:
    """What ``LanguageModel.packed_hidden_states`` returns: the top layer's outputs
    ``[B, T', H]`` (zeros past a row's end) and each row's state after its last token.
    ``table`` is the first layer's input gate table (``lstm_step.input_gate_table``)."""
    ids = pack_padded_sequence(tokens, lengths, batch_first=True, enforce_sorted=False)
    order, batch_sizes = ids.sorted_indices, ids.batch_sizes.tolist()
    h0, c0 = state
    if order is not None:
        h0, c0 = h0.index_select(1, order), c0.index_select(1, order)
    h_out, c_out = [], []
    x = ids.data
    for index, recurrent in enumerate(packed.hidden):
        gates = table.index_select(0, x) if index == 0 else packed.input[index](x)
        h, c = h0[index].clone(), c0[index].clone()
        x = run_layer(gates, batch_sizes, recurrent, h, c)
        h_out.append(h)
        c_out.append(c)
    h_n, c_n = torch.stack(h_out), torch.stack(c_out)
    back = ids.unsorted_indices
    if back is not None:
        h_n, c_n = h_n.index_select(1, back), c_n.index_select(1, back)
    outputs = PackedSequence(x, ids.batch_sizes, ids.sorted_indices, ids.unsorted_indices)
    return pad_packed_sequence(outputs, batch_first=True)[0], (h_n, c_n)
