"""The bare model's predict on a padded batch: the least work any server can do per request.

Shared by the "ideal padded batches" row of the issue-13 table and the LitServe peer app,
so both do exactly this per batch and the engine and lstm-serve are measured against it.
"""

from __future__ import annotations

import torch

from models.network import LanguageModel


@torch.inference_mode()
def padded_top_k(
    model: LanguageModel, eos_id: int, batch: list[list[int]], k: int
) -> list[list[tuple[int, float]]]:
    """Top ``k`` next words after ``<eos>`` + each row of ``batch`` (ids), as (id, log-prob).

    Rows are right-padded with ``<eos>`` into one ``[B, 1 + T]`` batch and run as the
    engine runs prompts (``LanguageModel.packed_hidden_states``: padding is skipped); each
    row's distribution is decoded at its own last position.
    The decoder runs as the engine's does (``LanguageModel.project``: oneDNN's packed
    weight where ``prepare_for_serving`` chose it, else ``models.vocab_projection``), so
    the peers differ from lstm-serve in serving, not in arithmetic.
    """
    lengths = [len(ids) for ids in batch]
    width = 1 + max(lengths)
    tokens = torch.full((len(batch), width), eos_id, dtype=torch.long)
    for row, ids in enumerate(batch):
        tokens[row, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    state = model.initial_state(len(batch))
    hidden, _ = model.packed_hidden_states(tokens, [1 + n for n in lengths], state)
    last = hidden[torch.arange(len(batch)), torch.tensor(lengths)]
    values, indices = torch.log_softmax(model.project(last), -1).topk(k, -1)
    return [
        list(zip(ids, lps, strict=True))
        for ids, lps in zip(indices.tolist(), values.tolist(), strict=True)
    ]
