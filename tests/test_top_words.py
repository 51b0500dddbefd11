"""``service.engine.top_words``: the blocked top-k gives the same words and log-probs as
``topk`` over the whole vocabulary (float64 as the referee)."""

from __future__ import annotations

import pytest
import torch

from service.engine.top_words import BLOCK, _blocked_topk, top_words


def _logits(rows: int, vocab: int, seed: int, scale: float = 4.0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize(
    ("rows", "vocab", "k"),
    [(1, 10_000, 1), (25, 10_000, 5), (64, 10_000, 20), (7, 10_037, 5), (3, 33_278, 10)],
)
def test_same_words_and_log_probs_as_the_plain_ops(rows: int, vocab: int, k: int) -> None:
    logits = _logits(rows, vocab, seed=rows + vocab + k)
    log_probs, ids, log_norm = top_words(logits, k)
    exact = torch.log_softmax(logits.double(), -1)
    expected_values, expected_ids = exact.topk(k, -1)
    assert torch.equal(ids, expected_ids)  # random floats: no ties
    # as exact as logsumexp itself (log_softmax's ~1.5e-5 on real models would fail this)
    assert (log_probs.double() - expected_values).abs().max() <= 3e-6
    assert (log_norm.double() - logits.double().logsumexp(-1, keepdim=True)).abs().max() <= 3e-6


def test_the_last_partial_block_is_searched() -> None:
    """The best words sit past the last whole block of ``BLOCK`` words."""
    logits = _logits(4, 10 * BLOCK + 37, seed=1)
    logits[:, -3:] += 100.0
    _, ids, _ = top_words(logits, 2)
    assert ids.tolist() == [[10 * BLOCK + 34 + i for i in order] for order in _orders(logits)]


def _orders(logits: torch.Tensor) -> list[list[int]]:
    tail = logits[:, -3:]
    return [row.topk(2).indices.tolist() for row in tail]


def test_ties_keep_the_same_values() -> None:
    """Equal logits in several blocks: the values are those of ``topk`` (ids may swap)."""
    logits = torch.zeros(2, 10_000)
    logits[:, [5, 150, 2_999, 7_000]] = 3.0
    logits[:, 4_242] = 5.0
    values, ids = _blocked_topk(logits, 3)
    assert values.tolist() == logits.topk(3, -1).values.tolist()
    assert ids[:, 0].tolist() == [4_242, 4_242]
    assert all(set(row) <= {5, 150, 2_999, 7_000} for row in ids[:, 1:].tolist())


def test_k_zero_gives_the_log_sum_exp_alone() -> None:
    logits = _logits(5, 10_000, seed=3)
    log_probs, ids, log_norm = top_words(logits, 0)
    assert log_probs.shape == (5, 0) and ids.shape == (5, 0)
    assert torch.allclose(log_norm, logits.logsumexp(-1, keepdim=True), atol=1e-5, rtol=0)


def test_a_large_k_takes_the_plain_path_with_the_same_answer() -> None:
    logits = _logits(3, 1_000, seed=4)  # 4 * k * BLOCK > vocab: plain topk
    log_probs, ids, _ = top_words(logits, 50)
    expected_values, expected_ids = torch.log_softmax(logits, -1).topk(50, -1)
    assert torch.equal(ids, expected_ids)
    assert torch.allclose(log_probs, expected_values, atol=1e-5, rtol=0)
