"""Next-word sampling for a batch of generations, each with its own seeded generator.

Each row draws one uniform number from its own ``torch.Generator`` and then picks a
word by inverse CDF, so a row's choice depends only on its own logits and seed —
never on what else shares the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.engine.params import SamplingParams


def sample(logprobs: Tensor, params: list[SamplingParams], uniforms: Tensor) -> Tensor:
    """Pick one word per row.

    Args:
        logprobs: ``[B, V]`` log-probabilities (banned words already ``-inf``).
        params: one ``SamplingParams`` per row.
        uniforms: ``[B]`` floats in [0, 1), one draw from each row's generator.

    Returns:
        ``[B]`` int64 word ids.
    """
    out = torch.empty(len(params), dtype=torch.long)
    greedy = [i for i, p in enumerate(params) if p.greedy]
    if greedy:
        out[greedy] = logprobs[greedy].argmax(dim=-1).cpu()
    filtered = [i for i, p in enumerate(params) if not p.greedy and (p.top_k or p.top_p < 1)]
    plain = [i for i, p in enumerate(params) if not p.greedy and i not in set(filtered)]
    if plain:
        temps = torch.tensor(
            [params[i].temperature for i in plain], dtype=logprobs.dtype, device=logprobs.device
        )
        probs = torch.softmax(logprobs[plain] / temps[:, None], dim=-1)
        out[plain] = _inverse_cdf(probs, uniforms[plain].to(probs.device)).cpu()
    for i in filtered:
        out[i] = _filtered_one(logprobs[i], params[i], uniforms[i])
    return out


def _inverse_cdf(probs: Tensor, uniforms: Tensor) -> Tensor:
    cdf = probs.cumsum(dim=-1)
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1)
    index = torch.searchsorted(cdf, targets).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


def _filtered_one(logprobs: Tensor, params: SamplingParams, uniform: Tensor) -> int:
    """Top-k then top-p (nucleus) filtering, in descending order of probability."""
    sorted_lp, order = logprobs.sort(descending=True)
    if params.top_k:
        sorted_lp = sorted_lp[: params.top_k]
        order = order[: params.top_k]
    probs = torch.softmax(sorted_lp / params.temperature, dim=-1)
    if params.top_p < 1.0:
        before = probs.cumsum(-1) - probs
        keep = before < params.top_p
        keep[0] = True
        probs = probs[keep]
        order = order[keep]
    choice = _inverse_cdf(probs.unsqueeze(0), uniform.reshape(1).to(probs.device))
    return int(order[choice].item())


def word_logprobs(
    logprobs: Tensor, rows: list[int], words: Tensor, top_k: list[int]
) -> list[tuple[float, list[tuple[int, float]]]]:
    """Each listed row's log-prob of its chosen word and its ``top_k`` likeliest words.

    Read from the distribution the words were sampled from (the model's log-softmax with
    banned words at ``-inf``), before temperature and filters, as OpenAI's ``logprobs``.
    One top-k and one transfer to the host for all rows.

    Args:
        logprobs: ``[B, V]`` log-probabilities.
        rows: indices into the batch of the rows that asked.
        words: ``[B]`` the chosen word ids.
        top_k: one count per listed row (0: the chosen word's log-prob only).
    """
    index = torch.tensor(rows, device=logprobs.device)
    chosen_ids = words.to(logprobs.device).index_select(0, index)
    selected = logprobs.index_select(0, index)
    chosen = selected.gather(1, chosen_ids[:, None]).squeeze(1).cpu().tolist()
    most = min(max(top_k), selected.shape[-1])
    if not most:
        return [(value, []) for value in chosen]
    values, ids = selected.topk(most, -1)
    values_host, ids_host = values.cpu().tolist(), ids.cpu().tolist()
    return [
        (value, list(zip(ids_host[j][:k], values_host[j][:k], strict=True)))
        for j, (value, k) in enumerate(zip(chosen, top_k, strict=True))
    ]
