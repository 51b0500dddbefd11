"""Decoding a step's outputs: only the positions someone asked for, gathered by index.

Runs on the inference thread as part of ``ModelRunner.step``: per-token log-probs of fed
words (the first one from the slot's cached log-sum-exp when known: one dot product),
the next-word top-k and sampling distributions, and OpenAI's ``echo`` top-k per token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from service.engine.cache_step import wants_model_distribution
from service.engine.rows import Row, RowResult
from service.engine.top_k import log_norm, top_k

DECODE_CHUNK_ROWS = 512


@dataclass
class DecodePlan:
    """Which hidden vectors a step decodes, addressed in ``[previous_top (B rows); outputs
    flattened (B' x T)]``: token t of a row is predicted by the vector before it (the
    previous top state for t = 0), and the next-word distribution comes from the row's
    last vector."""

    scored_index: list[int] = field(default_factory=list)  # vectors scored in full
    scored_targets: list[int] = field(default_factory=list)
    scored_rows: list[tuple[int, int, bool]] = field(default_factory=list)  # row, n, cheap
    cheap_rows: list[int] = field(default_factory=list)  # first token from the log-sum-exp
    last_index: list[int] = field(default_factory=list)  # each needing row's last vector
    needs_last: list[int] = field(default_factory=list)
    prompt_rows: list[tuple[int, list[int]]] = field(default_factory=list)  # echo top-k

    @classmethod
    def of(cls, rows: list[Row], batch: int, width: int, norms: list[float]) -> DecodePlan:
        plan = cls()
        active = 0
        for i, row in enumerate(rows):
            n = len(row.tokens)
            base = batch + active * width
            active += 1 if n else 0
            if row.token_logprobs and n:
                cheap = not math.isnan(norms[i])
                if cheap:
                    plan.cheap_rows.append(i)
                else:
                    plan.scored_index.append(i)
                    plan.scored_targets.append(row.tokens[0])
                plan.scored_index.extend(range(base, base + n - 1))
                plan.scored_targets.extend(row.tokens[1:])
                plan.scored_rows.append((i, n, cheap))
            if row.prompt_top_k and n:
                plan.prompt_rows.append((i, [i, *range(base, base + n - 1)]))
            if row.top_k or row.distribution:
                plan.needs_last.append(i)
                plan.last_index.append(base + n - 1 if n else i)
        return plan


class StepDecoder:
    """The model's decoder (hidden -> vocabulary logits) applied where a step needs it."""

    def __init__(
        self, decoder: nn.Linear, device: torch.device, project: Callable[[Tensor], Tensor]
    ) -> None:
        self.decoder = decoder  # its weight rows score a first token by one dot product
        self.device = device
        # hidden [N, H] -> logits [N, V]: the model's serving projection (LanguageModel.project)
        self.project = project

    def decode(
        self,
        rows: list[Row],
        previous_top: Tensor,
        outputs: Tensor | None,
        previous_norm: list[float],
    ) -> tuple[list[RowResult], list[float]]:
        """Decode only the positions someone needs, gathered by index (``DecodePlan``).

        The first token is scored with one dot product when the slot's log-sum-exp is
        known. Returns the results and each row's new log-sum-exp (NaN where not computed).
        """
        results = [RowResult() for _ in rows]
        new_norm = [math.nan] * len(rows)
        width = outputs.shape[1] if outputs is not None else 0
        plan = DecodePlan.of(rows, previous_top.shape[0], width, previous_norm)
        vectors = previous_top
        if outputs is not None and (plan.scored_index or plan.last_index or plan.prompt_rows):
            vectors = torch.cat([previous_top, outputs.reshape(-1, outputs.shape[-1])])
        last_logits = None  # projected with the scored positions, when they fit together
        if plan.scored_rows:
            cheap_logprobs = self._first_token_logprobs(
                rows, plan.cheap_rows, previous_top, previous_norm
            )
            full: list[float] = []
            if plan.scored_index:
                full, last_logits = self._scored_and_last(vectors, plan)
            _spread_logprobs(results, plan.scored_rows, cheap_logprobs, full)
        if plan.prompt_rows:
            self._prompt_top(rows, results, plan.prompt_rows, vectors)
        if plan.last_index:
            if last_logits is None:
                index = torch.tensor(plan.last_index, device=self.device)
                last_logits = self.project(vectors.index_select(0, index))
            norms = self._fill_top(rows, results, plan.needs_last, last_logits)
            for i, norm in zip(plan.needs_last, norms, strict=True):
                new_norm[i] = norm
        return results, new_norm

    def _first_token_logprobs(
        self, rows: list[Row], cheap_rows: list[int], previous_top: Tensor, norms: list[float]
    ) -> list[float]:
        """log p(first token) = w_t . h + b_t - logsumexp, from the cached log-sum-exp."""
        if not cheap_rows:
            return []
        index = torch.tensor(cheap_rows, device=self.device)
        targets = torch.tensor([rows[i].tokens[0] for i in cheap_rows], device=self.device)
        decoder = self.decoder
        hidden = previous_top.index_select(0, index)
        logits = (decoder.weight.index_select(0, targets) * hidden).sum(-1)
        logits = logits + decoder.bias.index_select(0, targets)
        norm = torch.tensor([norms[i] for i in cheap_rows], dtype=logits.dtype)
        return (logits.cpu() - norm).tolist()

    def _fill_top(
        self, rows: list[Row], results: list[RowResult], needs_last: list[int], logits: Tensor
    ) -> list[float]:
        """Top-k and sampling distributions from raw logits ``[R, V]``: one fused
        ``log_softmax``, then the two-level top-k and the log-sum-exp (``top_k``)."""
        log_probs = torch.log_softmax(logits, -1)
        norms = log_norm(logits, log_probs)
        max_k = max(rows[i].top_k for i in needs_last)
        if max_k:
            value_tensor, id_tensor = top_k(log_probs, min(max_k, logits.shape[-1]))
            top_values = value_tensor.cpu().tolist()
            top_ids = id_tensor.cpu().tolist()
        for j, i in enumerate(needs_last):
            row = rows[i]
            if row.top_k:
                results[i].top = list(
                    zip(top_ids[j][: row.top_k], top_values[j][: row.top_k], strict=True)
                )
            if wants_model_distribution(row):
                results[i].distribution = log_probs[j]
        return norms.cpu().tolist()

    def _prompt_top(
        self,
        rows: list[Row],
        results: list[RowResult],
        prompt_rows: list[tuple[int, list[int]]],
        vectors: Tensor,
    ) -> None:
        """The top-k before each consumed token, from the vectors that predicted it
        (``vectors`` ``[N, H]``, addressed as in ``_decode``); decoded in chunks. Only
        echo asks for it, so the score and decode paths pay nothing."""
        for i, index in prompt_rows:
            k = min(rows[i].prompt_top_k, self.decoder.out_features)
            hidden = vectors.index_select(0, torch.tensor(index, device=self.device))
            top: list[list[tuple[int, float]]] = []
            for start in range(0, hidden.shape[0], DECODE_CHUNK_ROWS):
                logits = self.project(hidden[start : start + DECODE_CHUNK_ROWS])
                values, ids = top_k(torch.log_softmax(logits, -1), k)
                host = values.cpu().tolist()
                for id_row, value_row in zip(ids.cpu().tolist(), host, strict=True):
                    top.append(list(zip(id_row, value_row, strict=True)))
            results[i].prompt_top = top

    def _scored_and_last(
        self, vectors: Tensor, plan: DecodePlan
    ) -> tuple[list[float], Tensor | None]:
        """The scored tokens' log-probs and, when they fit in one chunk together, the
        logits of the last positions from the same projection (else None).

        Why one projection: every projection reads the whole decoder weight (8 MB for the
        bundled model, 26 MB for 2 x 650), and at a few rows a step's decoder is mostly
        that read. A feed of two tokens (a clitic, or a word and its ``<eos>``; 8 % of the
        WebSocket load's feeds) needs its second token scored, which made every step
        holding one read the weight twice (BENCHMARKS §0.7)."""
        m = len(plan.scored_index)
        together = bool(plan.last_index) and m + len(plan.last_index) <= DECODE_CHUNK_ROWS
        index = plan.scored_index + plan.last_index if together else plan.scored_index
        hidden = vectors.index_select(0, torch.tensor(index, device=self.device))
        if not together:
            return self._token_logprobs(hidden, plan.scored_targets), None
        logits = self.project(hidden)
        return _picked(logits[:m], plan.scored_targets), logits[m:]

    def _token_logprobs(self, hidden: Tensor, targets: list[int]) -> list[float]:
        """log p(target_m | hidden_m) for ``hidden`` ``[M, H]``, decoded in chunks."""
        out: list[float] = []
        for start in range(0, hidden.shape[0], DECODE_CHUNK_ROWS):
            logits = self.project(hidden[start : start + DECODE_CHUNK_ROWS])
            out.extend(_picked(logits, targets[start : start + DECODE_CHUNK_ROWS]))
        return out


def _picked(logits: Tensor, targets: list[int]) -> list[float]:
    """log p(target_m) from the raw logits ``[M, V]`` of each target's position."""
    target = torch.tensor(targets, device=logits.device)
    return torch.log_softmax(logits, -1).gather(1, target[:, None]).squeeze(1).cpu().tolist()


def _spread_logprobs(
    results: list[RowResult],
    scored_rows: list[tuple[int, int, bool]],
    cheap: list[float],
    full: list[float],
) -> None:
    """Hand each scored row its tokens' log-probs: the first one from ``cheap`` (one dot
    product) where the row's log-sum-exp was known, the rest from ``full``, in order."""
    position, cheap_position = 0, 0
    for i, n, first_cheap in scored_rows:
        if first_cheap:
            values = [cheap[cheap_position], *full[position : position + n - 1]]
            cheap_position += 1
            position += n - 1
        else:
            values = full[position : position + n]
            position += n
        results[i].token_logprobs = values
