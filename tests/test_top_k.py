"""The two-level top-k and the log-sum-exp from ``log_softmax`` (``service.engine.top_k``)
give what ``topk`` and ``logsumexp`` give."""

from __future__ import annotations

import pytest
import torch

from service.engine.top_k import BLOCK, log_norm, top_k


@pytest.mark.parametrize("width", [10_000, 40 * BLOCK, 40 * BLOCK + 37])
@pytest.mark.parametrize("k", [1, 5, 9])
def test_top_k_equals_topk(width: int, k: int) -> None:
    torch.manual_seed(width + k)
    x = torch.randn(33, width) * 4
    values, ids = top_k(x, k)
    want_values, want_ids = x.topk(k, -1)
    assert torch.equal(values, want_values)
    assert torch.equal(ids, want_ids)  # no ties in random floats


def test_top_k_finds_winners_crowded_into_one_block_spread_or_in_the_tail() -> None:
    width = 40 * BLOCK + 37
    x = torch.zeros(3, width)
    x[0, 5 * BLOCK : 5 * BLOCK + 6] = torch.arange(6.0) + 1  # all in one block
    x[1, [b * BLOCK + 3 for b in range(0, 40, 7)]] = torch.arange(6.0) + 1  # one per block
    x[2, width - 6 :] = torch.arange(6.0) + 1  # past the last whole block
    values, ids = top_k(x, 6)
    want_values, want_ids = x.topk(6, -1)
    assert torch.equal(values, want_values) and torch.equal(ids, want_ids)


def test_top_k_falls_back_where_blocks_would_not_pay() -> None:
    x = torch.randn(4, 1000)
    assert torch.equal(top_k(x, 5)[1], x.topk(5, -1)[1])  # fewer than 4 k blocks of words
    strided = torch.randn(1000, 4).t()  # not contiguous
    assert torch.equal(top_k(strided, 2)[1], strided.topk(2, -1)[1])


def test_log_norm_equals_logsumexp() -> None:
    torch.manual_seed(0)
    logits = torch.randn(17, 10_000) * 6 + 30  # large logits: the max must be taken out
    log_probs = torch.log_softmax(logits, -1)
    got = log_norm(logits, log_probs)
    torch.testing.assert_close(got, logits.double().logsumexp(-1).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(17), atol=1e-5, rtol=0)
