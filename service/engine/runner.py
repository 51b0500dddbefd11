"""The model on its device: one batched step over rows of different lengths.

Runs only on the inference thread. A step gathers the rows' states from the pool,
runs every layer once over a packed batch (so rows of 1 and 500 tokens share a step),
scatters the final states back, and decodes only the positions that someone needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.checkpoint import Checkpoint
from models.packed_linear import Kernel
from service.engine.cache_step import apply_caches
from service.engine.decode import DECODE_CHUNK_ROWS, StepDecoder
from service.engine.graphs import DecodeGraphs
from service.engine.rows import Row, RowResult, copy_only
from service.engine.session_cache import CachePool
from service.engine.state_pool import StatePool
from service.engine.top_k import log_norm

__all__ = ["DECODE_CHUNK_ROWS", "ModelRunner", "Row", "RowResult"]


class ModelRunner:
    """Owns the model, the sentence-start state and the state pool."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        pool_capacity: int,
        cuda_graphs: bool = False,
        cpu_kernels: Kernel = "auto",
    ) -> None:
        self.model = checkpoint.model.to(device).eval()
        self.kernels = self.model.prepare_for_serving(cpu_kernels)  # which, and why
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
            logits = self.model.project(h[-1])
            self.start_log_norm = float(log_norm(logits, torch.log_softmax(logits, -1))[0])
        self.start_h, self.start_c = h, c  # [layers, 1, hidden]
        self.decoder = StepDecoder(self.model.decoder, device, self.model.project)
        self.caches: CachePool | None = None  # sessions' continuous caches, if served
        # One-token steps replayed from CUDA graphs (on a CPU: the same padded path, eager).
        self.decode_graphs = DecodeGraphs(self.model, device) if cuda_graphs else None
        if self.decode_graphs is not None:
            self.decode_graphs.prepare()  # capture every bucket at start-up, not in a request

    def warm_up(self) -> None:
        """A few steps of the shapes serving sees first, before readiness turns true."""
        slots = [self.pool.allocate() for _ in range(4)]
        for lengths in ([1], [1, 1, 1, 1], [12, 3, 1, 7]):
            rows = [
                Row(slots[i], [1] * n, reset=True, top_k=5, token_logprobs=True)
                for i, n in enumerate(lengths)
            ]
            self.step(rows)
        for slot in slots:
            self.pool.release(slot)

    @torch.inference_mode()
    def step(self, rows: list[Row]) -> list[RowResult]:
        """Advance every row; rows must name distinct slots. Slot copies come first; rows
        that only copy (a fork) skip the gather, the layers and the decoder."""
        self.pool.ensure_capacity()
        self._prepare_caches(rows)
        self._write_slots(rows)
        copies = [pair for row in rows if row.copies for pair in row.copies]
        if not copies:
            return self._advance(rows)
        self.pool.copy([s for s, _ in copies], [t for _, t in copies])
        busy = [i for i, row in enumerate(rows) if not copy_only(row)]
        if len(busy) == len(rows):
            return self._advance(rows)
        results = [RowResult() for _ in rows]
        if busy:
            advanced = self._advance([rows[i] for i in busy])
            for i, result in zip(busy, advanced, strict=True):
                results[i] = result
        return results

    def _write_slots(self, rows: list[Row]) -> None:
        """States handed in as bytes for other slots than the rows' own (stored history)."""
        for row in rows:
            for slot, h, c in row.writes or ():
                self.pool.h[:, slot] = self._from_bytes(h, self.pool.hidden)
                self.pool.c[:, slot] = self._from_bytes(c, self.pool.cell_size)
                self.pool.log_norm[slot] = math.nan

    def _prepare_caches(self, rows: list[Row]) -> None:
        """Forks' cache copies, rewinds and resets of cached sessions, before any step."""
        caches = self.caches
        if caches is None:
            return
        caches.ensure_capacity()
        for row in rows:
            if row.cache is not None:
                caches.prepare(row.cache, row.reset)

    def _restore_cache(self, slot: int, raw: bytes) -> None:
        assert self.caches is not None
        if raw:
            self.caches.load(slot, raw)
        else:  # a state without a cache (an older token): the cache starts empty
            self.caches.clear(slot)

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
                if row.cache is not None and self.caches is not None:
                    self._restore_cache(row.cache.slot, row.restore[2])
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
        results, new_norm = self.decoder.decode(rows, previous_top, outputs, previous_norm)
        if self.caches is not None:
            apply_caches(self.caches, rows, results, previous_top, outputs)
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
        for row, result in zip(rows, results, strict=True):
            if row.capture_extra is not None:
                extra_h, extra_c = self.pool.read(row.capture_extra)
                result.extra_state = (_host_bytes(extra_h), _host_bytes(extra_c))
        wanted = [i for i, row in enumerate(rows) if row.capture_state]
        if not wanted:
            return
        index = torch.tensor(wanted, device=self.device)
        # [B, layers, width] each; c has width 0 for rnn/gru.
        h_host, c_host = (
            t.index_select(1, index).to("cpu", torch.float32).transpose(0, 1).contiguous().numpy()
            for t in (h, c)
        )
        caches = self.caches
        for j, i in enumerate(wanted):
            cache = rows[i].cache
            dump = caches.dump(cache.slot) if cache is not None and caches is not None else b""
            results[i].state = (h_host[j].tobytes(), c_host[j].tobytes(), dump)

    def _run_layers(
        self, rows: list[Row], h: Tensor, c: Tensor
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Outputs ``[B', T, H]`` of the rows with tokens (in row order), and final states."""
        active = [i for i, row in enumerate(rows) if row.tokens]
        if not active:
            return None, h, c
        lengths = [len(rows[i].tokens) for i in active]
        longest = max(lengths)
        # One tensor from one padded list: a torch.tensor per row cost ~10 us a row.
        padded = torch.tensor(
            [[*rows[i].tokens, *[0] * (longest - n)] for i, n in zip(active, lengths, strict=True)],
            dtype=torch.long,
        )
        index = torch.tensor(active, device=self.device)
        state = (h.index_select(1, index), c.index_select(1, index))
        tokens = padded.to(self.device)
        if any(rows[i].save_within for i in active):
            out, (new_h, new_c) = self._run_in_phases([rows[i] for i in active], tokens, state)
        elif self.decode_graphs is not None and longest == 1:
            out, (new_h, new_c) = self.decode_graphs.step(tokens, state)
        else:  # the model's own packed step: the layers are not re-implemented here
            out, (new_h, new_c) = self.model.packed_hidden_states(tokens, lengths, state)
        return out, h.index_copy(1, index, new_h), c.index_copy(1, index, new_c)

    def _run_in_phases(
        self, rows: list[Row], tokens: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``packed_hidden_states`` cut at the rows' ``save_within`` offsets: phase k runs
        every row's k-th piece, and the states at the cuts are saved in between. Returns
        what one packed call would: outputs ``[B, T, H]`` and the final states."""
        cuts = [[0, *sorted(o for o, _ in row.save_within or ()), len(row.tokens)] for row in rows]
        saves = [dict(row.save_within or ()) for row in rows]
        h, c = state[0].clone(), state[1].clone()
        batch, longest = tokens.shape
        out = h.new_zeros(batch, longest, self.model.config.hidden_size)
        for phase in range(max(len(b) for b in cuts) - 1):
            members = [j for j, b in enumerate(cuts) if phase + 1 < len(b)]
            spans = [(cuts[j][phase], cuts[j][phase + 1]) for j in members]
            lengths = [end - start for start, end in spans]
            piece = tokens.new_zeros(len(members), max(lengths))
            for n, (j, (start, end)) in enumerate(zip(members, spans, strict=True)):
                piece[n, : end - start] = tokens[j, start:end]
            index = torch.tensor(members, device=self.device)
            part, (ph, pc) = self.model.packed_hidden_states(
                piece, lengths, (h.index_select(1, index), c.index_select(1, index))
            )
            h.index_copy_(1, index, ph)
            c.index_copy_(1, index, pc)
            saved: list[tuple[int, int]] = []  # (position in this phase, slot)
            for n, (j, (start, end)) in enumerate(zip(members, spans, strict=True)):
                out[j, start:end] = part[n, : end - start]
                if end in saves[j]:
                    saved.append((n, saves[j][end]))
            if saved:
                self._save_states(saved, ph, pc)
        return out, (h, c)

    def _save_states(self, saved: list[tuple[int, int]], h: Tensor, c: Tensor) -> None:
        """Columns ``n`` of ``h``/``c`` ``[layers, B, width]`` into pool slots."""
        columns = torch.tensor([n for n, _ in saved], device=self.device)
        slots = torch.tensor([slot for _, slot in saved], device=self.device)
        self.pool.scatter(slots, h.index_select(1, columns), c.index_select(1, columns))
        for _, slot in saved:
            self.pool.log_norm[slot] = math.nan


def _host_bytes(state: Tensor) -> bytes:
    """``[layers, width]`` on the host as float32 bytes."""
    return state.to(torch.float32).contiguous().numpy().tobytes()
