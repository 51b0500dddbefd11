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
    pool: CachePool, slots: list[int], weights: Tensor, has: list[bool], model_logprobs: Tensor
) -> Tensor:
    """The mixture's probabilities ``[B, V]`` of the next word, for a batch of sessions.

    Args:
        weights: ``[B, R]`` window weights (``CachePool.attend``); ``has``: whether each
            window held a pair (a row without one keeps the model's distribution).
        model_logprobs: ``[B, V]`` the model's log-probabilities.
    """
    device = weights.device
    lam = torch.tensor([[pool.params.lam if h else 0.0] for h in has], device=device)
    index = torch.tensor(slots, device=device)
    cache = torch.zeros_like(model_logprobs).scatter_add_(1, pool.words[index], weights)
    return model_logprobs.exp().mul_(1.0 - lam).add_(cache.mul_(lam))


def mix_scalar(model_logprob: float, cache_prob: float, lam: float) -> float:
    """``log((1 - lam) exp(model_logprob) + lam cache_prob)`` for one word, in log space."""
    keep = model_logprob + math.log1p(-lam)
    if cache_prob <= 0.0 or lam <= 0.0:
        return keep
    other = math.log(cache_prob) + math.log(lam)
    high, low = max(keep, other), min(keep, other)
    return high + math.log1p(math.exp(low - high))
