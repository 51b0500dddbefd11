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

    Rows are right-padded with ``<eos>`` into one ``[B, 1 + T]`` forward (``nn.LSTM`` on
    a padded batch, what a plain server does); each row's distribution is decoded at its
    own last position, so padding never changes an answer. The decoder runs as the
    engine's does (``LanguageModel.project``: oneDNN's packed weight where
    ``prepare_for_serving`` chose it, else ``models.vocab_projection``).

    The padded forward is kept, not the engine's packed prompt rows: for the bundled
    2 x 200 model it is the faster of the two up to 16 rows and even at 64 (0.90 against
    1.36 ms at 8 rows of 6-12 tokens; ``python -m bench.micro.cpu_matmul_ab``), so the
    peers are not slowed by the engine's choice. For ``medium`` the engine's
    ``packed_rows`` is faster (5.9 against 9.1 ms at 8 rows): a peer serving it is
    measured at its plain speed.
    """
    lengths = [len(ids) for ids in batch]
    width = 1 + max(lengths)
    tokens = torch.full((len(batch), width), eos_id, dtype=torch.long)
    for row, ids in enumerate(batch):
        tokens[row, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    hidden, _ = model.hidden_states(tokens)
    last = hidden[torch.arange(len(batch)), torch.tensor(lengths)]
    values, indices = torch.log_softmax(model.project(last), -1).topk(k, -1)
    return [
        list(zip(ids, lps, strict=True))
        for ids, lps in zip(indices.tolist(), values.tolist(), strict=True)
    ]
