"""The mixture of the continuous cache: the arithmetic on a session's ring, batched.

``p(w) = (1 - lam) p_model(w) + lam * sum_{i in window, x_{i+1} = w} softmax_i(theta h_t . h_i)``
(``models.continuous_cache`` has the method and the offline evaluator; these functions read
the rings of ``service.engine.session_cache.CachePool``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.continuous_cache import KEY_DTYPE, masked_softmax
from service.engine.session_cache import CachePool


def feed_cache_logprobs(
    pool: CachePool, slot: int, queries: Tensor, targets: Tensor
) -> tuple[Tensor, Tensor]:
    """log p_cache of each fed word and whether any pair was there to see (call before
    ``append``). Step ``t`` (query ``queries[t]``, word ``targets[t]``) sees the ring's pairs
    younger than ``window - t`` and the feed's own pairs before it, as
    ``models.continuous_cache.segment_log_probs`` does. Returns ``([T], [T] bool)``."""
    window = pool.params.window
    steps = queries.shape[0]
    step = torch.arange(steps, device=queries.device).unsqueeze(1)
    ages, exact = pool.ages(slot)
    ring_valid = (ages.unsqueeze(0) < exact) & (ages.unsqueeze(0) + step < window)
    own = torch.arange(steps, device=queries.device).unsqueeze(0)
    own_valid = (own < step) & (step - own <= window)
    keys = torch.cat([pool.keys[slot], queries.to(KEY_DTYPE)]).to(queries.dtype)
    words = torch.cat([pool.words[slot], targets])
    valid = torch.cat([ring_valid, own_valid], 1)
    weights = masked_softmax(pool.params.theta * (queries @ keys.T), valid)
    probs = (weights * (words.unsqueeze(0) == targets.unsqueeze(1))).sum(-1)
    return torch.log(probs), valid.any(-1)


def mix(model_logprob: Tensor, cache_logprob: Tensor, lam: float) -> Tensor:
    """``log((1 - lam) p_model + lam p_cache)``, in log space (``lam == 0``: the model's)."""
    log_keep = math.log1p(-lam) if lam < 1.0 else -math.inf
    log_lam = math.log(lam) if lam > 0.0 else -math.inf
    return torch.logaddexp(model_logprob + log_keep, cache_logprob + log_lam)


def mixed_probs(
    pool: CachePool, slots: list[int], weights: Tensor, has: Tensor, model_logprobs: Tensor
) -> Tensor:
    """The mixture's probabilities ``[B, V]`` of the next word (for sampling).

    Args:
        weights: ``[B, R]`` window weights (``CachePool.attend``), ``has`` ``[B]`` bool.
        model_logprobs: ``[B, V]`` the model's log-probabilities.
    """
    index = torch.tensor(slots, device=weights.device)
    cache = torch.zeros_like(model_logprobs).scatter_add_(1, pool.words[index], weights)
    lam = has.to(model_logprobs.dtype).unsqueeze(1) * pool.params.lam
    return model_logprobs.exp().mul_(1.0 - lam).add_(cache.mul_(lam))


def mixed_top(
    pool: CachePool,
    slots: list[int],
    weights: Tensor,
    has: Tensor,
    model_logprobs: Tensor,
    model_top: Tensor,
) -> tuple[Tensor, Tensor]:
    """The mixture's top ``k``: (log-probs ``[B, k]``, ids ``[B, k]``), likeliest first.

    Only a word in the model's top ``k`` or in the window can be in the mixture's, so only
    those ``k + R`` candidates are mixed (no pass over the vocabulary but one scatter).

    Args:
        weights, has: as for ``mixed_probs``.
        model_logprobs: ``[B, V]`` the model's log-probabilities.
        model_top: ``[B, k]`` ids of the model's top ``k``.
    """
    index = torch.tensor(slots, device=weights.device)
    words = pool.words.index_select(0, index)
    lam = has.to(model_logprobs.dtype).unsqueeze(1) * pool.params.lam
    cache = torch.zeros_like(model_logprobs).scatter_add_(1, words, weights)
    ids = torch.cat([model_top, words], 1)
    probs = model_logprobs.gather(1, ids).exp().mul_(1.0 - lam)
    probs.add_(cache.gather(1, ids).mul_(lam))
    # A word may be a candidate several times (with equal values): keep one of each.
    ids, order = ids.sort(1)
    probs = probs.gather(1, order)
    repeat = torch.zeros_like(ids, dtype=torch.bool)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    values, chosen = probs.masked_fill(repeat, -1.0).topk(model_top.shape[1], -1)
    return values.log(), ids.gather(1, chosen)
