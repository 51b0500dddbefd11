"""The continuous cache of Grave, Joulin & Usunier (2016): a session remembers its own words.

The cache holds pairs ``(h_i, x_{i+1})``: the top-layer output at step ``i`` (the vector fed
to the decoder) and the word that followed it. At step ``t`` the next word is predicted by

    p(w) = (1 - lam) p_model(w) + lam * sum_{i in window, x_{i+1} = w} softmax_i(theta h_t . h_i)

where the window is the last ``window`` pairs before step ``t`` (``i < t``; the current
``h_t`` has no following word yet, so it is never its own key). With no pair in the cache
yet the model's distribution is used unchanged. No training: ``theta``, ``lam`` and
``window`` are tuned on validation data (``python -m models.tune_cache``).

Two entry points share the arithmetic:

* ``cached_log_probs``: one step for a batch of sessions, each with its own window of keys
  (stored at ``KEY_DTYPE``) and word ids, padded to a common width with a ``valid`` mask.
* ``segment_log_probs``: a run of consecutive steps of one stream (a feed, a chunk of an
  offline evaluation), each step seeing the pairs of the steps before it in the segment.

``CacheWindow`` keeps one session's last ``window`` pairs and its pending ``h``.
Mixing is done in log space, so ``lam == 0`` returns the model's log-probabilities bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# Keys are stored at half width (a 2 x 650 model's 2,000-pair window is 2.6 MB per
# session); the dot products are computed in the query's dtype (float32).
KEY_DTYPE = torch.float16


@dataclass(frozen=True)
class CacheParams:
    """The cache's three numbers.

    Attributes:
        theta: scale of the dot products ``h_t . h_i`` (an inverse temperature; the
            top-layer outputs of the bundled models have norms of about 3).
        lam: weight of the cache distribution in the mixture, in ``[0, 1]``.
        window: how many ``(h_i, x_{i+1})`` pairs are kept (the most recent ones).
    """

    theta: float
    lam: float
    window: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"cache lambda must be in [0, 1], got {self.lam}")
        if self.window < 1:
            raise ValueError(f"cache window must be positive, got {self.window}")
        if not math.isfinite(self.theta) or self.theta < 0:
            raise ValueError(f"cache theta must be finite and >= 0, got {self.theta}")

    def to_dict(self) -> dict[str, Any]:
        return {"theta": self.theta, "lambda": self.lam, "window": self.window}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheParams:
        """From a card's ``continuous_cache`` entry (``theta``, ``lambda``, ``window``)."""
        return cls(
            theta=float(data["theta"]), lam=float(data["lambda"]), window=int(data["window"])
        )


def masked_softmax(scores: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the last dim of ``scores`` restricted to ``valid``; all-invalid rows -> 0.

    Args:
        scores: ``[..., K]`` float.
        valid: ``[..., K]`` bool, broadcastable to ``scores``.

    Returns:
        ``[..., K]`` weights, each row summing to 1 (or 0 where no entry is valid).
    """
    if scores.shape[-1] == 0:  # no keys at all (every window in the batch empty)
        return scores
    scores = scores.masked_fill(~valid, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - top)
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)


def scatter_cache_probs(weights: Tensor, words: Tensor, vocab_size: int) -> Tensor:
    """The cache distribution: each key's weight added to the word that followed it.

    Args:
        weights: ``[B, K]`` float attention weights (0 on invalid keys).
        words: ``[B, K]`` int64 word ids ``x_{i+1}`` (any id in range where invalid).
        vocab_size: ``V``.

    Returns:
        ``[B, V]`` float probabilities (rows sum to the rows of ``weights``).
    """
    probs = weights.new_zeros(weights.shape[0], vocab_size)
    return probs.scatter_add_(1, words, weights)


def mix_log_probs(
    model_log_probs: Tensor, cache_probs: Tensor, has_cache: Tensor, lam: float
) -> Tensor:
    """``log((1 - lam) p_model + lam p_cache)``, the model's row unchanged where no cache.

    Args:
        model_log_probs: ``[B, V]`` float log-probabilities (log-softmax of the logits).
        cache_probs: ``[B, V]`` float, rows summing to 1 where ``has_cache``.
        has_cache: ``[B]`` bool, whether the row's window holds at least one pair.
        lam: the mixture weight.

    Returns:
        ``[B, V]`` log-probabilities; with ``lam == 0`` exactly ``model_log_probs``.
    """
    # x + log1p(-0) is x itself and logaddexp(x, -inf) == x, so lam == 0 degrades to the
    # model's numbers bit for bit; rows without a cache keep them whatever lam is.
    log_keep = math.log1p(-lam) if lam < 1.0 else -math.inf
    log_lam = math.log(lam) if lam > 0.0 else -math.inf
    mixed = torch.logaddexp(model_log_probs + log_keep, torch.log(cache_probs) + log_lam)
    return torch.where(has_cache.unsqueeze(-1), mixed, model_log_probs)


def cache_attention(query: Tensor, keys: Tensor, valid: Tensor, theta: float) -> Tensor:
    """Attention of each session's current output over its own window.

    Args:
        query: ``[B, H]`` float32, the top-layer output ``h_t``.
        keys: ``[B, W, H]`` the window's ``h_i`` (any float dtype, usually ``KEY_DTYPE``).
        valid: ``[B, W]`` bool, which slots hold a pair (windows are padded to ``W``).
        theta: scale of the dot products.

    Returns:
        ``[B, W]`` float32 weights, rows summing to 1 (0 for an empty window).
    """
    scores = torch.einsum("bwh,bh->bw", keys.to(query.dtype), query)
    return masked_softmax(theta * scores, valid)


def cached_log_probs(
    model_log_probs: Tensor,
    query: Tensor,
    keys: Tensor,
    words: Tensor,
    valid: Tensor,
    params: CacheParams,
) -> Tensor:
    """One step of the mixture for a batch of sessions (the server's per-step call).

    Args:
        model_log_probs: ``[B, V]`` float32 log-softmax of the model's logits at ``h_t``.
        query: ``[B, H]`` float32 top-layer outputs ``h_t``.
        keys: ``[B, W, H]`` (``KEY_DTYPE``) each session's cached ``h_i``, padded to ``W``.
        words: ``[B, W]`` int64 the words ``x_{i+1}`` that followed them.
        valid: ``[B, W]`` bool, the filled slots; only the last ``params.window`` of a
            session should be valid (the caller keeps the window).
        params: theta and lambda (``params.window`` is the caller's to enforce).

    Returns:
        ``[B, V]`` float32 log-probabilities of the next word.
    """
    weights = cache_attention(query, keys, valid, params.theta)
    probs = scatter_cache_probs(weights, words, model_log_probs.shape[-1])
    return mix_log_probs(model_log_probs, probs, valid.any(dim=-1), params.lam)


def band_mask(steps: int, history: int, window: int, device: torch.device | None = None) -> Tensor:
    """Which keys each step of a segment may see: ``[steps, history + steps]`` bool.

    Keys are ``history`` earlier pairs followed by one pair per step of the segment. Step
    ``t`` (key column ``history + t`` is its own pair) sees columns
    ``[history + t - window, history + t - 1]``: the ``window`` pairs completed before it.
    """
    rows = torch.arange(steps, device=device).unsqueeze(1) + history
    columns = torch.arange(history + steps, device=device).unsqueeze(0)
    return (columns < rows) & (columns >= rows - window)


def segment_attention(
    queries: Tensor, history_keys: Tensor, window: int, theta: float
) -> tuple[Tensor, Tensor]:
    """Attention of every step of a segment over the pairs completed before it.

    Args:
        queries: ``[T, H]`` float32, ``h_t`` for the ``T`` steps of the segment; after step
            ``t`` is scored, ``(queries[t], target t)`` joins the cache.
        history_keys: ``[P, H]`` the keys of earlier pairs (oldest first, ``P`` may be 0).
        window: pairs each step sees (earlier history beyond it is ignored).
        theta: scale of the dot products.

    Returns:
        ``([T, P + T] float32 weights, [T] bool has_cache)``; column ``j < P`` is history
        pair ``j``, column ``P + s`` the segment's own pair ``s``.
    """
    steps, history = queries.shape[0], history_keys.shape[0]
    keys = torch.cat([history_keys.to(KEY_DTYPE), queries.to(KEY_DTYPE)]).to(queries.dtype)
    valid = band_mask(steps, history, window, queries.device)
    weights = masked_softmax(theta * (queries @ keys.T), valid)
    return weights, valid.any(dim=-1)


def segment_log_probs(
    model_log_probs: Tensor,
    queries: Tensor,
    targets: Tensor,
    history_keys: Tensor,
    history_words: Tensor,
    params: CacheParams,
) -> Tensor:
    """The mixture for ``T`` consecutive steps of one stream (a feed, an evaluation chunk).

    Args:
        model_log_probs: ``[T, V]`` float32 log-softmax of the logits at each step.
        queries: ``[T, H]`` float32 top-layer outputs ``h_t``.
        targets: ``[T]`` int64 the word that follows each step (``x_{t+1}``).
        history_keys: ``[P, H]`` keys of earlier pairs (oldest first; ``KEY_DTYPE``).
        history_words: ``[P]`` int64 their words.
        params: theta, lambda, window.

    Returns:
        ``[T, V]`` float32 log-probabilities; step ``t`` sees the last ``window`` of the
        history pairs and the segment's pairs before ``t``.
    """
    weights, has_cache = segment_attention(queries, history_keys, params.window, params.theta)
    words = torch.cat([history_words, targets]).expand(weights.shape[0], -1)
    probs = scatter_cache_probs(weights, words, model_log_probs.shape[-1])
    return mix_log_probs(model_log_probs, probs, has_cache, params.lam)


class CacheWindow:
    """One session's cache: its last ``window`` pairs and the output awaiting its next word.

    ``keys`` ``[P, H]`` (``KEY_DTYPE``) and ``words`` ``[P]`` int64, oldest first, ``P <=
    window``; ``pending`` ``[H]`` is the output of the last token fed, whose following
    word is not known yet (it is the query of the next prediction, not yet a key).

    A feed of ``tokens`` ``[T]`` with outputs ``[T, H]``: token ``k`` is predicted at the
    output before it (``pending`` for ``k = 0``), so its log-probability comes from
    ``segment_log_probs(lp, queries, tokens, window.keys, window.words, params)`` with
    ``queries = [pending, outputs[:-1]]`` and ``lp`` the log-softmax at those queries;
    then ``extend(outputs, tokens)``; the next word's distribution is ``cached_log_probs``
    at ``pending`` (batched over sessions with ``stack_windows``).
    """

    def __init__(self, window: int, hidden_size: int, device: torch.device | None = None) -> None:
        self.window = window
        self.keys = torch.empty(0, hidden_size, dtype=KEY_DTYPE, device=device)
        self.words = torch.empty(0, dtype=torch.long, device=device)
        self.pending: Tensor | None = None

    def extend(self, outputs: Tensor, tokens: Tensor) -> None:
        """Record a feed: ``tokens`` ``[T]`` int64 and their top-layer outputs ``[T, H]``.

        The pending output pairs with ``tokens[0]``, ``outputs[i]`` with ``tokens[i + 1]``,
        and ``outputs[-1]`` becomes the new pending output.
        """
        if tokens.numel() == 0:
            return
        queries, targets = outputs[:-1], tokens[1:]
        if self.pending is not None:
            queries, targets = torch.cat([self.pending.unsqueeze(0), queries]), tokens
        self.keys = torch.cat([self.keys, queries.to(KEY_DTYPE)])[-self.window :]
        self.words = torch.cat([self.words, targets])[-self.window :]
        self.pending = outputs[-1]

    @property
    def nbytes(self) -> int:
        """Bytes held (keys, words and the pending output), for a per-session budget."""
        pending = 0 if self.pending is None else self.pending.numel() * self.pending.element_size()
        return (
            self.keys.numel() * self.keys.element_size()
            + self.words.numel() * self.words.element_size()
            + pending
        )


def stack_windows(windows: list[CacheWindow]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad sessions' windows to a batch: ``keys [B, W, H]``, ``words [B, W]``, ``valid [B, W]``.

    ``W`` is the longest window in the batch; shorter ones are right-aligned (left-padded).
    """
    width = max((w.words.shape[0] for w in windows), default=0)
    hidden = windows[0].keys.shape[1]
    device = windows[0].keys.device
    keys = torch.zeros(len(windows), width, hidden, dtype=KEY_DTYPE, device=device)
    words = torch.zeros(len(windows), width, dtype=torch.long, device=device)
    valid = torch.zeros(len(windows), width, dtype=torch.bool, device=device)
    for row, window in enumerate(windows):
        count = window.words.shape[0]
        if count:
            keys[row, width - count :] = window.keys
            words[row, width - count :] = window.words
            valid[row, width - count :] = True
    return keys, words, valid
