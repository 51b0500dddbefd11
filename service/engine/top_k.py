"""A step's log-probabilities, next-word top-k and log-sum-exp from raw logits, fast on a CPU.

Why: in a WebSocket closed loop (1,000 sessions, steps of ~256 rows of 10,000 logits),
``logsumexp`` and ``topk`` took 27 % of the inference thread's samples, more than the
LSTM step. torch's CPU ``logsumexp`` runs a generic ``exp`` where ``log_softmax``'s fused
kernel is about twice as fast, and ``topk`` partially sorts each whole row where the
maxima of 128-word blocks (``amax``) leave only the k best blocks to search. Together:
1.5-1.65x at 25-256 rows, the same ids (``python -m bench.micro.cpu_matmul_ab``,
BENCHMARKS §0.8).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 128  # vocabulary words per block of the two-level top-k


def log_norm(logits: Tensor, log_probs: Tensor) -> Tensor:
    """Each row's log-sum-exp ``[R]``, given its ``log_probs`` (``torch.log_softmax``, one
    fused pass where ``logsumexp`` takes a slow generic ``exp``): the
    largest logit minus its log-prob, which is ``max + log Σ exp(x - max)`` as
    ``logsumexp`` computes it, without another pass of ``exp``."""
    return logits.amax(-1) - log_probs.amax(-1)


def top_k(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``x.topk(k, -1)`` (values descending, their indices) of ``[R, V]`` rows.

    The k largest of a row lie in the k blocks with the largest maxima (a block outside
    them has k blocks above it, each holding a value at least its own maximum), so only
    those are searched. Ties may come back in another order than ``topk``'s."""
    rows, width = x.shape
    blocks = width // BLOCK
    if x.device.type != "cpu" or 4 * k * BLOCK > width or not x.is_contiguous():
        return x.topk(k, -1)
    body = x[:, : blocks * BLOCK].view(rows, blocks, BLOCK)
    best = body.amax(-1).topk(k, -1).indices  # [R, k] blocks
    candidates = body.gather(1, best[:, :, None].expand(rows, k, BLOCK)).reshape(rows, -1)
    offsets = torch.arange(BLOCK, device=x.device)
    ids = (best[:, :, None] * BLOCK + offsets).reshape(rows, -1)
    if blocks * BLOCK < width:  # the words past the last whole block are all candidates
        tail = torch.arange(blocks * BLOCK, width, device=x.device).expand(rows, -1)
        candidates = torch.cat([candidates, x[:, blocks * BLOCK :]], 1)
        ids = torch.cat([ids, tail], 1)
    values, position = candidates.topk(k, -1)
    return values, ids.gather(1, position)
