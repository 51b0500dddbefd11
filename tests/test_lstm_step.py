"""``models.lstm_step``: the one-token path agrees with ``nn.LSTM`` and is only used where
it may be."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from models import lstm_step


def _layers(sizes: list[int]) -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in itertools.pairwise(sizes))


def test_matches_nn_lstm_over_many_steps() -> None:
    layers = _layers([12, 20, 20])
    batch = 9
    h = torch.zeros(2, batch, 20)
    c = torch.zeros(2, batch, 20)
    h_ref, c_ref = h.clone(), c.clone()
    with torch.inference_mode():
        for _ in range(30):
            x = torch.randn(batch, 12)
            top, h, c = lstm_step.lstm_step(layers, x, h, c)
            ref = x.unsqueeze(1)
            hs, cs = [], []
            for i, layer in enumerate(layers):
                ref, (hi, ci) = layer(ref, (h_ref[i : i + 1], c_ref[i : i + 1]))
                hs.append(hi)
                cs.append(ci)
            h_ref, c_ref = torch.cat(hs), torch.cat(cs)
            assert torch.allclose(top, ref[:, 0], atol=1e-5)
            assert torch.allclose(h, h_ref, atol=1e-5) and torch.allclose(c, c_ref, atol=1e-5)


def test_applies_only_to_plain_lstm_stacks_and_small_batches() -> None:
    x = torch.zeros(4, 12)
    assert lstm_step.applies(_layers([12, 20]), x)
    assert not lstm_step.applies(_layers([12, 20]), torch.zeros(lstm_step.MAX_ROWS + 1, 12))
    assert not lstm_step.applies(nn.ModuleList([nn.GRU(12, 20, batch_first=True)]), x)
    assert not lstm_step.applies(nn.ModuleList([nn.LSTM(12, 20, proj_size=5)]), x)
    assert not lstm_step.applies(nn.ModuleList([nn.LSTM(12, 20, bias=False)]), x)


def test_the_input_gate_table_gives_the_same_step_as_the_embedding() -> None:
    torch.manual_seed(0)
    embedding = nn.Embedding(50, 12)
    layers = _layers([12, 20, 20])
    tokens = torch.tensor([3, 0, 49, 3, 17])
    h = torch.randn(2, 5, 20)
    c = torch.randn(2, 5, 20)
    with torch.inference_mode():
        table = lstm_step.input_gate_table(embedding, layers)
        kept = table.clone()
        plain = lstm_step.lstm_step(layers, embedding(tokens), h, c)
        first = table.index_select(0, tokens)
        tabled = lstm_step.lstm_step(layers, first, h, c, first_gates=first)
    assert table.shape == (50, 80)
    for a, b in zip(plain, tabled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert torch.equal(table, kept)  # the step adds to its gathered rows, not the table


def test_with_the_gate_table_any_batch_size_applies() -> None:
    layers = _layers([12, 20])
    many = torch.zeros(lstm_step.MAX_ROWS * 4, 12)
    assert not lstm_step.applies(layers, many)
    assert lstm_step.applies(layers, many, tabled=True)
