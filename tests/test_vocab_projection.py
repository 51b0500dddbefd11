"""``models.vocab_projection``: the blocked decoder gives ``nn.Linear``'s logits (bit for bit
with MKL on x86 when blocks are a multiple of 64 rows; within float32 rounding anywhere),
and only runs where it pays."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import vocab_projection
from models.vocab_projection import blocks_pay, project


def _decoder(hidden: int, vocab: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(hidden, vocab, bias=bias)


def test_a_large_decoder_is_blocked_and_gives_the_same_log_probs() -> None:
    decoder = _decoder(420, 10_007)  # 16.8 MB of weight, 10,007 = 19 blocks + 279 rows
    hidden = torch.randn(25, 420)
    with torch.inference_mode():
        assert blocks_pay(decoder, hidden)
        blocked, linear = project(decoder, hidden), decoder(hidden)
        torch.testing.assert_close(blocked, linear, rtol=0, atol=1e-6)
        exact = hidden.double() @ decoder.weight.double().t() + decoder.bias.double()
        error = blocked.log_softmax(-1).double() - exact.log_softmax(-1)
        assert float(error.abs().max()) < 1e-5


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [2, 7, 64])
def test_uneven_blocks_with_and_without_bias_match_nn_linear(
    monkeypatch: pytest.MonkeyPatch, bias: bool, rows: int
) -> None:
    monkeypatch.setattr(vocab_projection, "BLOCK_ROWS", 64)  # 1,000 = 15 blocks + 40 rows
    monkeypatch.setattr(vocab_projection, "LARGE_WEIGHT_BYTES", 0)
    decoder = _decoder(50, 1_000, bias)
    hidden = torch.randn(rows, 50)
    with torch.inference_mode():
        assert blocks_pay(decoder, hidden)
        torch.testing.assert_close(project(decoder, hidden), decoder(hidden), rtol=0, atol=1e-6)


def test_small_weights_block_only_from_min_rows() -> None:
    decoder = _decoder(64, 2_000)  # 512 KB
    few = torch.randn(vocab_projection.MIN_ROWS - 1, 64)
    many = torch.randn(vocab_projection.MIN_ROWS, 64)
    with torch.inference_mode():
        assert not blocks_pay(decoder, few)
        assert blocks_pay(decoder, many)
        torch.testing.assert_close(project(decoder, many), decoder(many), rtol=0, atol=1e-6)


def test_one_row_and_gradients_keep_nn_linear() -> None:
    decoder = _decoder(420, 10_007)
    assert not blocks_pay(decoder, torch.randn(1, 420))
    hidden = torch.randn(8, 420, requires_grad=True)
    logits = project(decoder, hidden)  # grad mode: must stay differentiable
    assert not blocks_pay(decoder, hidden)
    logits.sum().backward()
    assert hidden.grad is not None
