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

from models import lstm_step, packed_linear, packed_rows
from models.cells import make_layer
from models.config import ModelConfig
from models.packed_linear import Kernel, PackedLayers, PackedLinear
from models.vocab_projection import project

# Rows of at most this many tokens run as one-token steps (``_short_rows``), not packed.
SHORT_ROW_TOKENS = 2

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
        # Serving only (see prepare_for_serving): the first layer's gate table, and the
        # weights packed for oneDNN where it is the faster kernel here.
        self.input_gates: Tensor | None = None
        self.packed_layers: PackedLayers | None = None
        self.packed_decoder: PackedLinear | None = None
        self.reset_parameters()

    def reset_parameters(self, init_range: float = 0.1) -> None:
        nn.init.uniform_(self.embedding.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if not self.config.tied:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

    def prepare_for_serving(self, kernel: Kernel = "auto") -> str:
        """Build what the CPU serving step reads instead of recomputing it: every word's
        first-layer input gates (``lstm_step.input_gate_table``, ``V x 4H`` floats), and,
        where oneDNN is the faster kernel here (``packed_linear.choose``: timed once on
        the decoder unless ``kernel`` says), the decoder and gate weights packed for it.
        Call once the weights are final (they are not tracked: a later weight change
        needs another call). Returns which kernels serve, and why (for the log)."""
        self.input_gates, self.packed_layers, self.packed_decoder = None, None, None
        if self.embedding.weight.device.type != "cpu":
            return "default kernels (not on a CPU)"
        with torch.no_grad():
            if lstm_step.plain_stack(self.layers):
                self.input_gates = lstm_step.input_gate_table(self.embedding, self.layers)
            packed, why = packed_linear.choose(kernel, self.decoder)
            if packed:
                self.packed_decoder = PackedLinear(self.decoder.weight, self.decoder.bias)
                if lstm_step.plain_stack(self.layers):
                    self.packed_layers = PackedLayers.of(self.layers)
        return why

    def project(self, hidden: Tensor) -> Tensor:
        """The decoder's logits ``[N, V]`` for serving's hidden vectors ``[N, H]``: through
        the packed weight when there is one (no gradient), else ``vocab_projection``."""
        packed = self.packed_decoder
        if packed is None or hidden.dim() != 2 or torch.is_grad_enabled():
            return project(self.decoder, hidden)
        return packed(hidden)

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
            the inference path. Single-token batches (decode steps) skip packing, and so do
            batches of rows no longer than ``SHORT_ROW_TOKENS`` (``_short_rows``). Longer
            rows take ``packed_rows`` where the weights are packed for oneDNN and the batch
            is wide enough to pay for its Python loop, else ``nn.LSTM``.
        """
        longest = max(lengths)
        table = self._gate_table_for(tokens)
        if longest <= SHORT_ROW_TOKENS and lstm_step.applies(
            self.layers, tokens, table is not None
        ):
            if longest == 1:
                return self._one_token_step(tokens[:, 0], state, table)
            return self._short_rows(tokens, lengths, state, table)
        wide = len(lengths) * self.config.hidden_size >= packed_linear.MIN_ROWS_TIMES_HIDDEN
        if table is not None and self.packed_layers is not None and wide:
            return packed_rows.packed_rows(table, self.packed_layers, tokens, lengths, state)
        packed = longest > 1
        x = self.embedding(tokens)
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

    def _short_rows(
        self, tokens: Tensor, lengths: list[int], state: State, table: Tensor | None
    ) -> tuple[Tensor, State]:
        """Rows of a few tokens as one-token steps, each over the rows still going.

        A session feed is mostly one word, but a clitic (``it 's``) or a sentence's last
        word with its ``<eos>`` is two tokens. One such row among 250 one-token feeds used
        to send the whole step down ``nn.LSTM``'s packed path (BENCHMARKS §0.4)."""
        going, longest = torch.tensor(lengths, device=tokens.device), max(lengths)
        out, (h, c) = self._one_token_step(tokens[:, 0], state, table)
        out = torch.cat([out, out.new_zeros(out.shape[0], longest - 1, out.shape[2])], 1)
        for t in range(1, longest):
            rows = torch.nonzero(going > t).squeeze(1)
            row_state = (h.index_select(1, rows), c.index_select(1, rows))
            top, (row_h, row_c) = self._one_token_step(tokens[rows, t], row_state, table)
            out[:, t].index_copy_(0, rows, top[:, 0])
            h.index_copy_(1, rows, row_h)
            c.index_copy_(1, rows, row_c)
        return out, (h, c)

    def _one_token_step(
        self, tokens: Tensor, state: State, table: Tensor | None
    ) -> tuple[Tensor, State]:
        """``lstm_step`` for ``tokens`` ``[B]``, from the input gate ``table`` when given."""
        if table is not None:
            first = table.index_select(0, tokens)
            top, h, c = lstm_step.lstm_step(
                self.layers, first, *state, first_gates=first, packed=self.packed_layers
            )
        else:
            x = self.embedding(tokens)
            top, h, c = lstm_step.lstm_step(self.layers, x, *state, packed=self.packed_layers)
        return top.unsqueeze(1), (h, c)

    def _gate_table_for(self, tokens: Tensor) -> Tensor | None:
        """The input gate table, where it may serve these tokens (built, same device, eval)."""
        table = self.input_gates
        if table is None or self.training or table.device != tokens.device:
            return None
        return table

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
