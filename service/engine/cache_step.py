"""The continuous cache's share of a model step: mix the rows of cached sessions.

Runs on the inference thread right after the step decoded the model's numbers. For the
rows of cached sessions it (1) mixes the fed words' log-probs with the cache, (2) files
the new ``(h_i, x_{i+1})`` pairs, (3) attends from each row's latest output over its
window, once for the whole batch of rows, and keeps those weights, and (4) replaces the
next-word top-k (and sampling distribution) by the mixture's, in one batched pass.

The common case, one fed word, reads its cache probability from the weights the row's
previous step kept (the window and the query are the same), so a one-word feed costs one
pass over its window. Rows without a cache are not touched: their numbers stay the
model's bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.engine.cache_mixture import feed_cache_logprobs, mix, mix_scalar, mixed_probs
from service.engine.rows import Row, RowResult
from service.engine.session_cache import CachePool


def wants_model_distribution(row: Row) -> bool:
    """The step must hand back the model's next-word log-probs ``[V]`` of this row."""
    return row.distribution or (row.cache is not None and row.top_k > 0)


def apply_caches(
    pool: CachePool,
    rows: list[Row],
    results: list[RowResult],
    previous_top: Tensor,
    outputs: Tensor | None,
) -> None:
    """Mix every cached row's answers and record its pairs.

    Args:
        pool: the rings.
        rows, results: the step's rows and the model's answers (changed in place).
        previous_top: ``[B, H]`` each row's top-layer output before its tokens.
        outputs: ``[B', T, H]`` the top-layer outputs of the rows with tokens, in row order.
    """
    cached: list[int] = []
    last: list[Tensor] = []
    singles: list[int] = []  # one fed word, read from the kept weights
    active = 0
    for i, row in enumerate(rows):
        count = len(row.tokens)
        index = active
        active += 1 if count else 0
        if row.cache is None:
            continue
        cached.append(i)
        if not count:
            last.append(previous_top[i])
            continue
        assert outputs is not None
        last.append(outputs[index, count - 1])
        if count == 1 and pool.fresh[row.cache.slot]:
            singles.append(i)
        else:
            _feed_segment(pool, row, results[i], previous_top[i], outputs[index, : count - 1])
    if not cached:
        return
    if singles:
        _feed_singles(pool, rows, results, previous_top, singles)
    slots = [rows[i].cache.slot for i in cached]  # type: ignore[union-attr]
    weights, has = pool.attend(slots, torch.stack(last))
    _mix_next(pool, rows, results, cached, weights, has)


def _feed_segment(
    pool: CachePool, row: Row, result: RowResult, first_query: Tensor, outputs: Tensor
) -> None:
    """A feed of several words (or one after a rewind, fork or restore): each word sees the
    window and the feed's own words before it."""
    assert row.cache is not None
    slot = row.cache.slot
    queries = torch.cat([first_query.unsqueeze(0), outputs])
    targets = torch.tensor(row.tokens, device=queries.device)
    if row.token_logprobs:
        model = torch.tensor(result.token_logprobs, dtype=queries.dtype, device=queries.device)
        cached, has = feed_cache_logprobs(pool, slot, queries, targets)
        result.token_logprobs = torch.where(
            has, mix(model, cached, pool.params.lam), model
        ).tolist()
    pool.append(slot, queries, targets)


def _feed_singles(
    pool: CachePool,
    rows: list[Row],
    results: list[RowResult],
    previous_top: Tensor,
    singles: list[int],
) -> None:
    """One-word feeds, batched: p_cache(word) from the weights each session kept."""
    device = previous_top.device
    slots = [rows[i].cache.slot for i in singles]  # type: ignore[union-attr]
    words = [rows[i].tokens[0] for i in singles]
    scored = [j for j, i in enumerate(singles) if rows[i].token_logprobs]
    if scored:
        index = torch.tensor([slots[j] for j in scored], device=device)
        targets = torch.tensor([[words[j]] for j in scored], device=device)
        hits = pool.words.index_select(0, index) == targets
        probs = (pool.last_weights.index_select(0, index) * hits).sum(1).tolist()
        lam = pool.params.lam
        for j, prob in zip(scored, probs, strict=True):
            result = results[singles[j]]
            if pool.has[slots[j]]:
                result.token_logprobs = [mix_scalar(result.token_logprobs[0], prob, lam)]
    pool.append_one(slots, previous_top[singles], torch.tensor(words, device=device))


def _mix_next(
    pool: CachePool,
    rows: list[Row],
    results: list[RowResult],
    cached: list[int],
    weights: Tensor,
    has: list[bool],
) -> None:
    """The mixture's top-k and distribution of the rows that asked, in one batch."""
    wanted = [j for j, i in enumerate(cached) if results[i].distribution is not None]
    if not wanted:
        return
    model = torch.stack([results[cached[j]].distribution for j in wanted])  # type: ignore[misc]
    slots = [rows[cached[j]].cache.slot for j in wanted]  # type: ignore[union-attr]
    probs = mixed_probs(pool, slots, weights[wanted], [has[j] for j in wanted], model)
    k = max(rows[cached[j]].top_k for j in wanted)
    if k:
        values, ids = probs.topk(min(k, probs.shape[-1]), -1)
        top_values, top_ids = values.log().tolist(), ids.tolist()
    for n, j in enumerate(wanted):
        row, result = rows[cached[j]], results[cached[j]]
        if row.top_k:
            result.top = list(zip(top_ids[n][: row.top_k], top_values[n][: row.top_k], strict=True))
        result.distribution = probs[n].log() if row.distribution else None
