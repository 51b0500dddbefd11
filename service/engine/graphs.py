"""The decode step at a few fixed batch sizes, replayed from CUDA graphs on a GPU.

Why: a decode step (every row feeds exactly one token) of a small LSTM is a few dozen
tiny kernels; on a GPU the step is bound by launching them from Python, not by the
arithmetic. A CUDA graph records the launches of one step once and replays them with a
single call, but only for fixed shapes and fixed memory. So batch sizes are rounded up to
a few buckets (:data:`DEFAULT_BUCKETS`), the inputs are copied into static buffers of the
bucket's size, and each bucket's step is captured once and replayed.

On the CPU, or with capture off, the very same path (bucket, copy, padded step, slice
back) runs eagerly, so CPU tests exercise everything except the capture itself. Batches
larger than the largest bucket run the model's plain packed step.

The model's own ``packed_hidden_states`` is what is run (and captured): the layers are
not re-implemented here. Rows of a batch are independent in every cell the model has, so
the padding rows (token 0 and whatever state the buffers last held) never affect the real
rows; their outputs are sliced off.

Nothing here is wired into the runner by default: ``ModelRunner._run_layers`` calls
:meth:`DecodeGraphs.step` when every length is 1 and ``LSTM_SERVE_CUDA_GRAPHS`` is on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from models.network import LanguageModel

State = tuple[Tensor, Tensor]

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN/cuBLAS set-up)

logger = logging.getLogger(__name__)


def bucket_for(batch: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds ``batch`` rows, or ``None`` when none does."""
    return next((size for size in sorted(buckets) if size >= batch), None)


@dataclass
class _Bucket:
    """The static buffers of one batch size; on CUDA, its captured graph.

    ``tokens`` ``[N, 1]`` int64, ``h`` ``[layers, N, hidden]``, ``c`` ``[layers, N, cell]``
    (cell width 0 for rnn/gru) are the inputs; ``out`` ``[N, 1, hidden]``, ``new_h`` and
    ``new_c`` the outputs, rewritten in place by every replay.
    """

    tokens: Tensor
    h: Tensor
    c: Tensor
    out: Tensor | None = None
    new_h: Tensor | None = None
    new_c: Tensor | None = None
    graph: torch.cuda.CUDAGraph | None = None


class DecodeGraphs:
    """The decode step of ``model`` at fixed batch sizes, captured in CUDA graphs on a GPU.

    Args:
        model: the model, already on ``device`` and in ``eval()`` mode.
        device: where the model and the state live.
        buckets: the batch sizes that get static buffers (and, on CUDA, a graph).
        capture: record CUDA graphs; default: when ``device`` is CUDA. With ``False`` the
            bucketed path runs eagerly (the CPU path, and a switch for debugging on a GPU).
    """

    def __init__(
        self,
        model: LanguageModel,
        device: torch.device,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        capture: bool | None = None,
    ) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {list(buckets)}")
        self.model = model
        self.device = torch.device(device)
        self.buckets = tuple(sorted(set(buckets)))
        self.capture = self.device.type == "cuda" if capture is None else capture
        if self.capture and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {self.device}")
        self._buckets: dict[int, _Bucket] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None

    @property
    def captured_sizes(self) -> list[int]:
        """The batch sizes whose step is replayed from a CUDA graph."""
        return [n for n, b in sorted(self._buckets.items()) if b.graph is not None]

    def prepare(self) -> None:
        """Allocate (and on CUDA capture) every bucket now, largest first, so no request
        pays for a capture and the graphs can share one memory pool."""
        for size in reversed(self.buckets):
            self._bucket(size)

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decode step: what ``model.packed_hidden_states(tokens, [1] * B, state)`` returns.

        Args:
            tokens: ``[B, 1]`` int64 word ids on ``device``.
            state: ``(h, c)``, ``h`` ``[layers, B, hidden]``, ``c`` ``[layers, B, cell]``.

        Returns:
            Outputs ``[B, 1, hidden]`` and the new ``(h, c)``. Within a bucket these are
            views of static buffers, overwritten by the next step of the same bucket size:
            consume (or copy) them before the next step, as the runner does.
        """
        batch = tokens.shape[0]
        if tokens.dim() != 2 or tokens.shape[1] != 1:
            raise ValueError(f"decode tokens must be [B, 1], got {list(tokens.shape)}")
        size = bucket_for(batch, self.buckets)
        with torch.inference_mode():
            if size is None:  # beyond the largest bucket: the plain step
                return self.model.packed_hidden_states(tokens, [1] * batch, state)
            bucket = self._bucket(size)
            bucket.tokens[:batch].copy_(tokens)
            bucket.h[:, :batch].copy_(state[0])
            bucket.c[:, :batch].copy_(state[1])
            if bucket.graph is not None:
                bucket.graph.replay()
            else:
                self._run_eager(bucket)
        assert bucket.out is not None and bucket.new_h is not None and bucket.new_c is not None
        return bucket.out[:batch], (bucket.new_h[:, :batch], bucket.new_c[:, :batch])

    def _bucket(self, size: int) -> _Bucket:
        """The bucket of ``size`` rows, made (and captured) on first use."""
        bucket = self._buckets.get(size)
        if bucket is None:
            with torch.inference_mode():
                bucket = self._allocate(size)
                if self.capture:
                    self._capture(bucket)
                else:
                    self._run_eager(bucket)
            self._buckets[size] = bucket
        return bucket

    def _allocate(self, size: int) -> _Bucket:
        h, c = self.model.initial_state(size, self.device)
        tokens = torch.zeros(size, 1, dtype=torch.long, device=self.device)
        return _Bucket(tokens=tokens, h=h, c=c)

    def _forward(self, bucket: _Bucket) -> tuple[Tensor, State]:
        size = bucket.tokens.shape[0]
        return self.model.packed_hidden_states(bucket.tokens, [1] * size, (bucket.h, bucket.c))

    def _run_eager(self, bucket: _Bucket) -> None:
        bucket.out, (bucket.new_h, bucket.new_c) = self._forward(bucket)

    def _capture(self, bucket: _Bucket) -> None:
        """Warm up on a side stream, then record one step (the PyTorch CUDA-graphs recipe).

        A capture that fails (a cell whose kernels cannot be captured) leaves the bucket
        eager, with a warning, rather than failing the server.
        """
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._forward(bucket)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                out, (new_h, new_c) = self._forward(bucket)
        except RuntimeError as error:
            logger.warning("CUDA graph capture failed at batch %d: %s", len(bucket.tokens), error)
            self._run_eager(bucket)
            return
        bucket.out, bucket.new_h, bucket.new_c, bucket.graph = out, new_h, new_c, graph


@dataclass
class HostCopy:
    """A device-to-host copy in flight: ``tensor`` is valid once :meth:`wait` returns."""

    tensor: Tensor
    event: torch.cuda.Event | None = None

    def wait(self) -> Tensor:
        """Block until the copy has landed (no-op for a copy that was synchronous)."""
        if self.event is not None:
            self.event.synchronize()
        return self.tensor


def to_host(tensor: Tensor) -> HostCopy:
    """Start copying ``tensor`` to the host without blocking the CPU thread.

    On CUDA the target is pinned (page-locked) memory from torch's caching host allocator
    and the copy is queued on the current stream with ``non_blocking=True``; an event
    marks its end, so the caller can overlap other work and :meth:`HostCopy.wait` later.
    Anywhere else it is a plain ``.cpu()`` (already complete).
    """
    if tensor.device.type != "cuda":
        return HostCopy(tensor.cpu())
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(tensor.device))
    return HostCopy(host, event)


__all__ = ["DEFAULT_BUCKETS", "DecodeGraphs", "HostCopy", "bucket_for", "to_host"]
