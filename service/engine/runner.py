"""The model on its device: one batched step over rows of different lengths.

Runs only on the inference thread. A step gathers the rows' states from the pool,
runs every layer once over a packed batch (so rows of 1 and 500 tokens share a step),
scatters the final states back, and decodes only the positions that someone needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.checkpoint import Checkpoint
from service.engine.state_pool import StatePool

DECODE_CHUNK_ROWS = 512


@dataclass
class Row:
    """One row of a step.

    Attributes:
        slot: the state slot read and written.
        tokens: word ids to consume (may be empty).
        reset: start from the sentence-start state instead of the slot's contents.
        token_logprobs: return the log-prob of each consumed token.
        top_k: return the top-k of the next-word distribution (0: none).
        distribution: return the full next-word log-probs ``[V]`` (for sampling).
        restore: float32 bytes of (h, c), each ``[layers, hidden]``, to start from
            instead of the slot's contents (a session resumed from the store).
        capture_state: return the slot's new (h, c) as float32 bytes (to store it).
        prompt_top_k: return the top-k of the distribution that predicted each consumed
            token (OpenAI's ``echo`` with ``logprobs``; 0: none).
        copies: (source, target) slot pairs copied before the step reads any state
            (fork, rewind: a state copy on the device, no model step).
        save_to: a slot that receives the row's state *before* its tokens (a session's
            rewind history), after ``reset`` / ``restore`` / ``copies`` are applied.
        save_after: a slot that receives the row's state *after* its tokens (the prefix
            cache of stateless requests).
    """

    slot: int
    tokens: list[int]
    reset: bool = False
    token_logprobs: bool = False
    top_k: int = 0
    distribution: bool = False
    restore: tuple[bytes, bytes] | None = None
    capture_state: bool = False
    prompt_top_k: int = 0
    copies: list[tuple[int, int]] | None = None
    save_to: int | None = None
    save_after: int | None = None


@dataclass
class RowResult:
    token_logprobs: list[float] = field(default_factory=list)
    top: list[tuple[int, float]] = field(default_factory=list)
    distribution: Tensor | None = None
    state: tuple[bytes, bytes] | None = None  # float32 (h, c) bytes, if capture_state
    prompt_top: list[list[tuple[int, float]]] = field(default_factory=list)  # per token


class ModelRunner:
    """Owns the model, the sentence-start state and the state pool."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, pool_capacity: int) -> None:
        self.model = checkpoint.model.to(device).eval()
        self.vocabulary = checkpoint.vocabulary
        self.device = device
        config = self.model.config
        self.pool = StatePool(
            config.num_layers,
            config.hidden_size,
            pool_capacity,
            device,
            cell_size=config.cell_state_size,
        )
        with torch.inference_mode():
            eos = torch.tensor([[self.vocabulary.eos_id]], device=device)
            _, (h, c) = self.model.hidden_states(eos)
            self.start_log_norm = float(self.model.decoder(h[-1]).logsumexp(-1)[0])
        self.start_h, self.start_c = h, c  # [layers, 1, hidden]

    @torch.inference_mode()
    def step(self, rows: list[Row]) -> list[RowResult]:
        """Advance every row; rows must name distinct slots. Slot copies come first; rows
        that only copy (a fork) skip the gather, the layers and the decoder."""
        self.pool.ensure_capacity()
        copies = [pair for row in rows if row.copies for pair in row.copies]
        if not copies:
            return self._advance(rows)
        self.pool.copy([s for s, _ in copies], [t for _, t in copies])
        busy = [i for i, row in enumerate(rows) if not _copy_only(row)]
        if len(busy) == len(rows):
            return self._advance(rows)
        results = [RowResult() for _ in rows]
        if busy:
            advanced = self._advance([rows[i] for i in busy])
            for i, result in zip(busy, advanced, strict=True):
                results[i] = result
        return results

    def _advance(self, rows: list[Row]) -> list[RowResult]:
        slots = torch.tensor([row.slot for row in rows], device=self.device)
        h, c = self.pool.gather(slots)
        resets = [i for i, row in enumerate(rows) if row.reset]
        if resets:
            index = torch.tensor(resets, device=self.device)
            h.index_copy_(1, index, self.start_h.expand(-1, len(resets), -1))
            c.index_copy_(1, index, self.start_c.expand(-1, len(resets), -1))
        for i, row in enumerate(rows):
            if row.restore is not None:
                h[:, i] = self._from_bytes(row.restore[0], self.pool.hidden)
                c[:, i] = self._from_bytes(row.restore[1], self.pool.cell_size)
        previous_top = h[-1]  # [B, H]: the output that predicts each row's first token
        log_norm = self.pool.log_norm
        previous_norm = [
            self.start_log_norm
            if row.reset
            else (math.nan if row.restore is not None else log_norm[row.slot])
            for row in rows
        ]
        self._save_before(rows, h, c, previous_norm)
        outputs, h, c = self._run_layers(rows, h, c)
        self.pool.scatter(slots, h, c)
        results, new_norm = self._decode(rows, previous_top, outputs, previous_norm)
        for row, norm, before in zip(rows, new_norm, previous_norm, strict=True):
            unchanged = not row.tokens and row.restore is None
            log_norm[row.slot] = before if unchanged and math.isnan(norm) else norm
        after = [(row.slot, row.save_after) for row in rows if row.save_after is not None]
        if after:
            self.pool.copy([s for s, _ in after], [t for _, t in after])
        self._capture(rows, results, h, c)
        return results

    def _save_before(self, rows: list[Row], h: Tensor, c: Tensor, norms: list[float]) -> None:
        """Copy the states rows start from into their ``save_to`` slots (rewind history)."""
        wanted = [i for i, row in enumerate(rows) if row.save_to is not None]
        if not wanted:
            return
        index = torch.tensor(wanted, device=self.device)
        targets = torch.tensor([rows[i].save_to for i in wanted], device=self.device)
        self.pool.scatter(targets, h.index_select(1, index), c.index_select(1, index))
        for i in wanted:
            self.pool.log_norm[rows[i].save_to] = norms[i]  # type: ignore[index]

    def _from_bytes(self, raw: bytes, width: int) -> Tensor:
        """float32 bytes -> ``[layers, width]`` on the device (raises on a wrong size)."""
        flat = torch.frombuffer(bytearray(raw), dtype=torch.float32) if raw else torch.empty(0)
        return flat.view(self.pool.layers, width).to(self.device, self.pool.dtype)

    def _capture(self, rows: list[Row], results: list[RowResult], h: Tensor, c: Tensor) -> None:
        """Copy the new states of the rows that asked, in one device-to-host transfer."""
        wanted = [i for i, row in enumerate(rows) if row.capture_state]
        if not wanted:
            return
        index = torch.tensor(wanted, device=self.device)
        # [B, layers, width] each; c has width 0 for rnn/gru.
        h_host, c_host = (
            t.index_select(1, index).to("cpu", torch.float32).transpose(0, 1).contiguous().numpy()
            for t in (h, c)
        )
        for j, i in enumerate(wanted):
            results[i].state = (h_host[j].tobytes(), c_host[j].tobytes())

    def _run_layers(
        self, rows: list[Row], h: Tensor, c: Tensor
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Outputs ``[B', T, H]`` of the rows with tokens (in row order), and final states."""
        active = [i for i, row in enumerate(rows) if row.tokens]
        if not active:
            return None, h, c
        lengths = [len(rows[i].tokens) for i in active]
        longest = max(lengths)
        padded = torch.zeros(len(active), longest, dtype=torch.long)
        for j, i in enumerate(active):
            padded[j, : lengths[j]] = torch.tensor(rows[i].tokens)
        index = torch.tensor(active, device=self.device)
        state = (h.index_select(1, index), c.index_select(1, index))
        out, (new_h, new_c) = self.model.packed_hidden_states(
            padded.to(self.device), lengths, state
        )  # the model's own packed step: the layers are not re-implemented here
        return out, h.index_copy(1, index, new_h), c.index_copy(1, index, new_c)

    def _decode(
        self,
        rows: list[Row],
        previous_top: Tensor,
        outputs: Tensor | None,
        previous_norm: list[float],
    ) -> tuple[list[RowResult], list[float]]:
        """Decode only the positions someone needs, gathered by index.

        Hidden vectors are addressed in ``[previous_top (B rows); outputs flattened]``:
        token t of a row is predicted by the vector before it (the previous top state for
        t = 0), and the next-word distribution comes from the row's last vector. The
        first token is scored with one dot product when the slot's log-sum-exp is known.
        Returns the results and each row's new log-sum-exp (NaN where not computed).
        """
        results = [RowResult() for _ in rows]
        new_norm = [math.nan] * len(rows)
        batch = previous_top.shape[0]
        width = outputs.shape[1] if outputs is not None else 0
        scored_index: list[int] = []
        scored_targets: list[int] = []
        scored_rows: list[tuple[int, int, bool]] = []  # (row, tokens, first one cheap)
        cheap_rows: list[int] = []
        last_index: list[int] = []
        needs_last: list[int] = []
        prompt_rows: list[tuple[int, list[int]]] = []  # (row, index of each token's vector)
        active = 0
        for i, row in enumerate(rows):
            n = len(row.tokens)
            base = batch + active * width
            if n:
                active += 1
            if row.token_logprobs and n:
                cheap = not math.isnan(previous_norm[i])
                if cheap:
                    cheap_rows.append(i)
                else:
                    scored_index.append(i)
                    scored_targets.append(row.tokens[0])
                scored_index.extend(range(base, base + n - 1))
                scored_targets.extend(row.tokens[1:])
                scored_rows.append((i, n, cheap))
            if row.prompt_top_k and n:
                prompt_rows.append((i, [i, *range(base, base + n - 1)]))
            if row.top_k or row.distribution:
                needs_last.append(i)
                last_index.append(base + n - 1 if n else i)
        vectors = previous_top
        if outputs is not None and (scored_index or last_index or prompt_rows):
            vectors = torch.cat([previous_top, outputs.reshape(-1, outputs.shape[-1])])
        if scored_rows:
            cheap_logprobs = self._first_token_logprobs(
                rows, cheap_rows, previous_top, previous_norm
            )
            full: list[float] = []
            if scored_index:
                index = torch.tensor(scored_index, device=self.device)
                full = self._token_logprobs(vectors.index_select(0, index), scored_targets)
            _spread_logprobs(results, scored_rows, cheap_logprobs, full)
        if prompt_rows:
            self._prompt_top(rows, results, prompt_rows, vectors)
        if last_index:
            last = vectors.index_select(0, torch.tensor(last_index, device=self.device))
            norms = self._fill_top(rows, results, needs_last, self.model.decoder(last))
            for i, norm in zip(needs_last, norms, strict=True):
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
        decoder = self.model.decoder
        hidden = previous_top.index_select(0, index)
        logits = (decoder.weight.index_select(0, targets) * hidden).sum(-1)
        logits = logits + decoder.bias.index_select(0, targets)
        norm = torch.tensor([norms[i] for i in cheap_rows], dtype=logits.dtype)
        return (logits.cpu() - norm).tolist()

    def _fill_top(
        self, rows: list[Row], results: list[RowResult], needs_last: list[int], logits: Tensor
    ) -> list[float]:
        """Top-k and sampling distributions from raw logits ``[R, V]``.

        The top-k of the logits is the top-k of the log-softmax, so only the k winners
        (and the log-sum-exp) are normalised, not the whole vocabulary.
        """
        log_norm = logits.logsumexp(-1, keepdim=True)  # [R, 1]
        max_k = max(rows[i].top_k for i in needs_last)
        if max_k:
            value_tensor, id_tensor = logits.topk(min(max_k, logits.shape[-1]), -1)
            top_values = (value_tensor - log_norm).cpu().tolist()
            top_ids = id_tensor.cpu().tolist()
        for j, i in enumerate(needs_last):
            row = rows[i]
            if row.top_k:
                results[i].top = list(
                    zip(top_ids[j][: row.top_k], top_values[j][: row.top_k], strict=True)
                )
            if row.distribution:
                results[i].distribution = logits[j] - log_norm[j]
        return log_norm.squeeze(1).cpu().tolist()

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
            k = min(rows[i].prompt_top_k, self.model.config.vocab_size)
            hidden = vectors.index_select(0, torch.tensor(index, device=self.device))
            top: list[list[tuple[int, float]]] = []
            for start in range(0, hidden.shape[0], DECODE_CHUNK_ROWS):
                logits = self.model.decoder(hidden[start : start + DECODE_CHUNK_ROWS])
                values, ids = logits.topk(k, -1)
                host = (values - logits.logsumexp(-1, keepdim=True)).cpu().tolist()
                for id_row, value_row in zip(ids.cpu().tolist(), host, strict=True):
                    top.append(list(zip(id_row, value_row, strict=True)))
            results[i].prompt_top = top

    def _token_logprobs(self, hidden: Tensor, targets: list[int]) -> list[float]:
        """log p(target_m | hidden_m) for ``hidden`` ``[M, H]``, decoded in chunks."""
        target = torch.tensor(targets, device=self.device)
        out: list[float] = []
        for start in range(0, hidden.shape[0], DECODE_CHUNK_ROWS):
            logits = self.model.decoder(hidden[start : start + DECODE_CHUNK_ROWS])
            chosen = logits.gather(1, target[start : start + DECODE_CHUNK_ROWS, None]).squeeze(1)
            picked = chosen - logits.logsumexp(-1)
            out.extend(picked.cpu().tolist())
        return out


def _copy_only(row: Row) -> bool:
    """Nothing to compute or return: the row's copies were all it asked for."""
    return not (
        row.tokens
        or row.reset
        or row.top_k
        or row.distribution
        or row.token_logprobs
        or row.restore is not None
        or row.capture_state
        or row.save_to is not None
        or row.save_after is not None
    )


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
