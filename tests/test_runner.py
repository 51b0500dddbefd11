"""The runner's decoder shortcuts: the first fed token from the cached log-sum-exp, and one
projection for a step's scored tokens and distributions, equal the full passes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models import packed_linear
from models.checkpoint import load
from models.packed_linear import Kernel
from service.engine.runner import ModelRunner, Row


def test_cached_log_norm_equals_full_decode(tiny_checkpoint: Path) -> None:
    runner = ModelRunner(load(tiny_checkpoint), torch.device("cpu"), 8)
    slots = [runner.pool.allocate() for _ in range(4)]
    prefixes = [[5, 6, 7], [8], [], [9, 10]]
    # k > 0 computes each slot's next-word distribution, so its log-sum-exp is cached...
    runner.step([Row(s, p, reset=True, top_k=3) for s, p in zip(slots, prefixes, strict=True)])
    assert not any(math.isnan(runner.pool.log_norm[s]) for s in slots)
    saved = [runner.pool.read(s) for s in slots]
    feeds = [[11, 12], [13], [14, 15, 16], [17]]
    cached = runner.step(
        [Row(s, f, token_logprobs=True) for s, f in zip(slots, feeds, strict=True)]
    )
    # ...and the same feeds from the same states with the cache cleared take the full path.
    for slot, (h, c) in zip(slots, saved, strict=True):
        runner.pool.write(slot, h, c)
        runner.pool.log_norm[slot] = math.nan
    full = runner.step([Row(s, f, token_logprobs=True) for s, f in zip(slots, feeds, strict=True)])
    for a, b in zip(cached, full, strict=True):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        assert all(
            abs(x - y) < 1e-5 for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True)
        )
    # A step that computes no distribution leaves no stale value behind.
    runner.step([Row(slots[0], [3])])
    assert math.isnan(runner.pool.log_norm[slots[0]])


def test_the_models_packed_step_equals_each_row_alone(tiny_checkpoint: Path) -> None:
    """``LanguageModel.packed_hidden_states`` (what the runner calls): rows of different
    lengths in one call give each row's own outputs and final state."""
    model = load(tiny_checkpoint).model.eval()
    rows = [[5, 6, 7, 8], [9], [10, 11]]
    lengths = [len(r) for r in rows]
    padded = torch.zeros(len(rows), max(lengths), dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = torch.tensor(row)
    with torch.inference_mode():
        state = model.initial_state(len(rows))
        out, (h, c) = model.packed_hidden_states(padded, lengths, state)
        for i, row in enumerate(rows):
            alone, (h1, c1) = model.hidden_states(torch.tensor([row]))
            assert torch.allclose(out[i, : len(row)], alone[0], atol=1e-6)
            assert torch.allclose(h[:, i], h1[:, 0], atol=1e-6)
            assert torch.allclose(c[:, i], c1[:, 0], atol=1e-6)


@pytest.mark.parametrize("kernels", ["default", "onednn"])
def test_a_step_with_two_token_feeds_reads_the_decoder_once(
    tiny_checkpoint: Path, kernels: Kernel
) -> None:
    """Scored tokens and next-word distributions come from one projection, and equal what
    each row alone gets (a row's own step decodes it without the others)."""
    if kernels == "onednn" and not packed_linear.available():
        pytest.skip("this torch has no oneDNN packed linear")
    runner = ModelRunner(load(tiny_checkpoint), torch.device("cpu"), 8, cpu_kernels=kernels)
    assert (runner.model.packed_decoder is not None) == (kernels == "onednn")
    slots = [runner.pool.allocate() for _ in range(4)]
    runner.step([Row(s, [5 + s], reset=True, top_k=3) for s in slots])
    saved = [runner.pool.read(s) for s in slots]
    norms = [runner.pool.log_norm[s] for s in slots]
    feeds = [[11, 12], [13], [14, 15], [17]]  # two of them two tokens: scored in full
    projections: list[int] = []
    counted = runner.decoder.project

    def counting(hidden: torch.Tensor) -> torch.Tensor:
        projections.append(hidden.shape[0])
        return counted(hidden)

    runner.decoder.project = counting
    rows = [Row(s, f, top_k=3, token_logprobs=True) for s, f in zip(slots, feeds, strict=True)]
    together = runner.step(rows)
    assert projections == [2 + 4]  # the two second tokens and the four last positions
    for slot, feed, (h, c), norm, result in zip(slots, feeds, saved, norms, together, strict=True):
        runner.pool.write(slot, h, c)
        runner.pool.log_norm[slot] = norm
        (alone,) = runner.step([Row(slot, feed, top_k=3, token_logprobs=True)])
        assert result.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)
        assert [w for w, _ in result.top] == [w for w, _ in alone.top]
        assert [v for _, v in result.top] == pytest.approx([v for _, v in alone.top], abs=1e-5)
