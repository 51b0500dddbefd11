"""Every cell type: fused modules equal their reference equations, and the network's
invariants (steps = sequence, packed = alone) hold for each."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models import reference_cell
from models.cells import make_layer
from models.config import CELL_TYPES, ModelConfig
from models.network import LanguageModel


@pytest.mark.parametrize(
    ("module", "cell"),
    [(torch.nn.GRU, reference_cell.gru_cell), (torch.nn.RNN, reference_cell.rnn_cell)],
)
def test_fused_module_equals_reference(module, cell) -> None:
    torch.manual_seed(0)
    layer = module(5, 4, batch_first=True)
    x, h = torch.randn(3, 6, 5), torch.randn(3, 4)
    fused, _ = layer(x, h[None])
    weights = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    for t in range(6):
        h = cell(x[:, t], h, *weights)
        torch.testing.assert_close(h, fused[:, t], atol=1e-6, rtol=1e-5)


def test_peephole_without_peepholes_is_the_lstm() -> None:
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(5, 4, batch_first=True)
    peep = make_layer("lstm_peephole", 5, 4)
    with torch.no_grad():
        peep.weight_ih_l0.copy_(lstm.weight_ih_l0)
        peep.weight_hh_l0.copy_(lstm.weight_hh_l0)
        peep.bias_l0.copy_(lstm.bias_ih_l0 + lstm.bias_hh_l0)
        peep.peephole_l0.zero_()
    x, state = torch.randn(2, 7, 5), (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    expected, (eh, ec) = lstm(x, state)
    got, (gh, gc) = peep(x, state)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gc, ec, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gh, eh, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        peep.peephole_l0.fill_(0.5)
    assert not torch.allclose(peep(x, state)[0], expected, atol=1e-4)


def test_cifg_couples_its_gates() -> None:
    torch.manual_seed(3)
    layer = make_layer("lstm_cifg", 3, 2)
    x, h, c = torch.randn(1, 3), torch.randn(1, 2), torch.randn(1, 2)
    pre = x @ layer.weight_ih_l0.T + h @ layer.weight_hh_l0.T + layer.bias_l0
    f = torch.sigmoid(pre[:, :2])
    expected_c = f * c + (1 - f) * torch.tanh(pre[:, 2:4])
    _, (_, got_c) = layer(x[:, None], (h[None], c[None]))
    torch.testing.assert_close(got_c[0], expected_c)


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_packed_rows_equal_rows_alone(cell: str) -> None:
    torch.manual_seed(4)
    layer = make_layer(cell, 4, 3)
    cell_size = 0 if cell in ("rnn", "gru") else 3
    x = torch.randn(3, 5, 4)
    h, c = torch.randn(1, 3, 3), torch.randn(1, 3, cell_size)
    lengths = [5, 2, 3]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (ph, pc) = layer(packed, (h, c))
    out, _ = pad_packed_sequence(out, batch_first=True)
    for row, n in enumerate(lengths):
        alone, (ah, ac) = layer(x[row : row + 1, :n], (h[:, row : row + 1], c[:, row : row + 1]))
        torch.testing.assert_close(out[row, :n], alone[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ph[:, row], ah[:, 0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(pc[:, row], ac[:, 0], atol=1e-6, rtol=1e-5)
        assert pc.shape[-1] == cell_size


@pytest.mark.parametrize("cell", CELL_TYPES)
def test_every_cell_steps_like_a_sequence(cell: str) -> None:
    torch.manual_seed(5)
    model = LanguageModel(ModelConfig(30, 8, 8, cell=cell, weight_drop=0.2)).eval()
    tokens = torch.randint(0, 30, (2, 6))
    with torch.no_grad():
        whole, _ = model(tokens)
        state = model.initial_state(2)
        steps = []
        for t in range(6):
            logits, state = model(tokens[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=1e-5, rtol=1e-5)
    model.train()
    model(tokens)[0].sum().backward()  # weight drop works for every cell
