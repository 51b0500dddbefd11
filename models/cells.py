"""Recurrent layers for every cell type, all with one interface.

``layer(x, (h, c)) -> (output, (h, c))`` where ``x`` is ``[B, T, in]`` (batch first) or a
``PackedSequence``, ``h`` is ``[1, B, H]`` and ``c`` is ``[1, B, H]`` for the LSTM family
or ``[1, B, 0]`` (empty) for ``rnn`` and ``gru``, whose state is ``h`` alone. Fused library
modules (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) are used where they exist; the peephole and
coupled-gate LSTMs run their reference cell step by step.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models import reference_cell

State = tuple[Tensor, Tensor]
HIDDEN_ONLY = ("rnn", "gru")


class HiddenOnly(nn.Module):
    """``nn.RNN`` / ``nn.GRU`` behind the (h, c) interface; ``c`` passes through empty."""

    def __init__(self, module: nn.RNN | nn.GRU) -> None:
        super().__init__()
        self.rnn = module

    @property
    def weight_hh_l0(self) -> Tensor:
        # Registered at runtime by nn.RNNBase, so torch's stubs cannot know it is a Tensor.
        return cast(Tensor, self.rnn.weight_hh_l0)

    def forward(
        self, x: Tensor | PackedSequence, state: State
    ) -> tuple[Tensor | PackedSequence, State]:
        out, h = self.rnn(x, state[0])
        return out, (h, state[1])


class LoopedLSTM(nn.Module):
    """An LSTM variant without a fused kernel: its reference cell, one step at a time.

    Rows of a padded batch stop updating past their length, so a packed batch gives the
    same outputs and final states as the fused modules do.
    """

    def __init__(self, input_size: int, hidden_size: int, gates: int, peephole: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        self.bias_l0 = nn.Parameter(torch.empty(gates * hidden_size))
        self.peephole_l0 = nn.Parameter(torch.empty(3, hidden_size)) if peephole else None
        bound = 1 / math.sqrt(hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def _update(self, pre: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        if self.peephole_l0 is not None:
            return reference_cell.peephole_lstm_update(pre, c, self.peephole_l0)
        return reference_cell.cifg_lstm_update(pre, c)

    def forward(
        self, x: Tensor | PackedSequence, state: State
    ) -> tuple[Tensor | PackedSequence, State]:
        lengths: Tensor | None = None  # set only for a packed batch
        if isinstance(x, PackedSequence):
            padded, lengths = pad_packed_sequence(x, batch_first=True)
        else:
            padded = x
        h, c = state[0][0], state[1][0]
        # Every step's input projection in one product; only h @ W_hh stays in the loop.
        projected = padded @ self.weight_ih_l0.T + self.bias_l0
        weight_hh = self.weight_hh_l0.T
        outputs = []
        for t in range(padded.shape[1]):
            h_next, c_next = self._update(projected[:, t] + h @ weight_hh, c)
            if lengths is None:
                h, c = h_next, c_next
            else:  # rows past their length keep their state
                live = (t < lengths).to(h.device).unsqueeze(1)
                h = torch.where(live, h_next, h)
                c = torch.where(live, c_next, c)
            outputs.append(h_next)
        out = torch.stack(outputs, dim=1)
        if lengths is not None:
            return pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), (
                h[None],
                c[None],
            )
        return out, (h[None], c[None])


def make_layer(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, batch_first=True)
    if cell == "gru":
        return HiddenOnly(nn.GRU(input_size, hidden_size, batch_first=True))
    if cell == "rnn":
        return HiddenOnly(nn.RNN(input_size, hidden_size, batch_first=True, nonlinearity="tanh"))
    if cell == "lstm_peephole":
        return LoopedLSTM(input_size, hidden_size, gates=4, peephole=True)
    if cell == "lstm_cifg":
        return LoopedLSTM(input_size, hidden_size, gates=3, peephole=False)
    raise ValueError(f"unknown cell type {cell!r}")
