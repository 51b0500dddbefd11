"""Embedding -> stacked LSTM -> dropout -> (tied) linear decoder.

Serving interface (batch first):
    tokens ``[B, T]`` int64, state ``(h, c)`` each ``[layers, B, hidden]`` float
    -> logits ``[B, T, V]`` and the new state.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from models import lstm_step
from models.cells import make_layer
from models.config import ModelConfig

State = tuple[Tensor, Tensor]


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout: one mask per sequence, shared across time. ``x`` ``[B, T, D]``."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


class LanguageModel(nn.Module):
    """A word-level recurrent language model (Zaremba et al. 2014, tied as Press & Wolf 2016)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        sizes = [config.embedding_size] + [config.hidden_size] * config.num_layers
        self.layers = nn.ModuleList(
            make_layer(config.cell, sizes[k], sizes[k + 1]) for k in range(config.num_layers)
        )
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tied:
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self, init_range: float = 0.1) -> None:
        nn.init.uniform_(self.embedding.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if not self.config.tied:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

    def initial_state(self, batch: int, device: torch.device | None = None) -> State:
        """Zeros ``(h, c)``: ``h`` ``[layers, batch, hidden]``, ``c`` the same for the LSTM
        family and ``[layers, batch, 0]`` for rnn/gru."""
        config = self.config
        device = device or self.embedding.weight.device
        dtype = self.embedding.weight.dtype
        h = torch.zeros(config.num_layers, batch, config.hidden_size, device=device, dtype=dtype)
        c = torch.zeros(
            config.num_layers, batch, config.cell_state_size, device=device, dtype=dtype
        )
        return h, c

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits ``[B, T, V]`` for every position, and the state after the last token."""
        hidden, state = self.hidden_states(tokens, state)
        return self.decoder(hidden), state

    def hidden_states(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The top layer's outputs ``[B, T, H]`` (before the decoder) and the new state.

        Callers that need logits at a few positions only (serving) decode just those.
        """
        if state is None:
            state = self.initial_state(tokens.shape[0], tokens.device)
        h0, c0 = state
        x = locked_dropout(self.embedding(tokens), self.config.dropout_input, self.training)
        h_out, c_out = [], []
        for index, layer in enumerate(self.layers):
            layer_state = (h0[index : index + 1], c0[index : index + 1])
            x, (h, c) = self._run_layer(layer, x, layer_state)
            h_out.append(h)
            c_out.append(c)
            last = index == len(self.layers) - 1
            p = self.config.dropout_output if last else self.config.dropout_hidden
            x = locked_dropout(x, p, self.training)
        return x, (torch.cat(h_out), torch.cat(c_out))

    def packed_hidden_states(
        self, tokens: Tensor, lengths: list[int], state: State
    ) -> tuple[Tensor, State]:
        """Rows of different lengths in one call (serving: a batch of prompts and feeds).

        Args:
            tokens: ``[B, T]`` word ids, each row padded past its own length.
            lengths: each row's real length (>= 1).
            state: ``(h, c)``, each ``[layers, B, width]``.

        Returns:
            The top layer's outputs ``[B, T', H]`` (``T'`` the longest length; zeros past a
            row's end) and each row's state after its own last token. No dropout: this is
            the inference path; single-token batches (decode steps) skip packing.
        """
        x = self.embedding(tokens)
        packed = max(lengths) > 1
        if not packed and lstm_step.applies(self.layers, x[:, 0]):
            top, h, c = lstm_step.lstm_step(self.layers, x[:, 0], *state)
            return top.unsqueeze(1), (h, c)
        sequence: Tensor | PackedSequence = (
            pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            if packed
            else x
        )
        h0, c0 = state
        h_out, c_out = [], []
        for index, layer in enumerate(self.layers):
            sequence, (h, c) = layer(sequence, (h0[index : index + 1], c0[index : index + 1]))
            h_out.append(h)
            c_out.append(c)
        if isinstance(sequence, PackedSequence):
            sequence = pad_packed_sequence(sequence, batch_first=True)[0]
        return sequence, (torch.cat(h_out), torch.cat(c_out))

    def _run_layer(self, layer: nn.Module, x: Tensor, state: State) -> tuple[Tensor, State]:
        if not (self.training and self.config.weight_drop > 0):
            return layer(x, state)
        name = "rnn.weight_hh_l0" if hasattr(layer, "rnn") else "weight_hh_l0"
        # Every layer make_layer builds has weight_hh_l0 (a Parameter set at runtime).
        weight_hh = cast(Tensor, layer.weight_hh_l0)
        dropped = nn.functional.dropout(weight_hh, self.config.weight_drop, True)
        return functional_call(layer, {name: dropped}, (x, state))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
