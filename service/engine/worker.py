"""The inference thread: turns queued work and running generations into model steps.

Policy: no added delay — when the thread is idle, work starts at once; whatever arrives
during a step joins the next one. Each step takes every running generation (one word
each, continuous batching) and then queued items in FIFO order, up to
``max_batch_size`` rows and ``max_batch_tokens`` prompt tokens; a too-long item at the
head runs alone rather than starving. Items of one session never share a step, so
feeds apply in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from service.engine.errors import Overloaded, ServeError, SessionNotFound, Timeout
from service.engine.metrics import EngineMetrics
from service.engine.native_names import prepare_this_thread
from service.engine.runner import ModelRunner, RowResult
from service.engine.sampling import sample, word_logprobs
from service.engine.work import DoneEvent, FinishReason, TokenEvent, WorkItem

log = logging.getLogger(__name__)


class InferenceWorker:
    """Owns the queue and the thread that runs the model."""

    def __init__(
        self,
        runner: ModelRunner,
        loop: asyncio.AbstractEventLoop,
        metrics: EngineMetrics,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue: int,
        nice: int = 0,
    ) -> None:
        self.runner = runner
        self.loop = loop
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.nice = nice  # the inference thread's own, set when it starts
        self._queue: list[WorkItem] = []
        self._active: list[WorkItem] = []  # running generations
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._exited = False  # the thread left its loop (cheaper to ask than is_alive())
        self.steps = 0
        self.submitted = 0  # items ever queued; each gets the next number as its ``seq``
        self._stepping_from: int | None = None  # lowest seq of the step running, if any
        self._banned = runner.vocabulary.unk_id

    # ---- event-loop side -------------------------------------------------------------
    def submit(self, item: WorkItem) -> None:
        """Queue ``item`` or raise ``Overloaded`` at once when the queue is full."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise Overloaded(f"queue full ({self.max_queue} waiting)")
            if item.generation is not None and len(self._active) >= self.max_queue:
                raise Overloaded(f"too many running generations ({len(self._active)})")
            self.submitted += 1
            item.seq = self.submitted
            self._queue.append(item)
            self._cond.notify()

    def settled_below(self) -> int:
        """Every item with a lower ``seq`` has had its first step (or never will): it
        no longer reads or writes any slot but its own. The queue stays in ``seq``
        order, so its head and the running step bound it."""
        with self._cond:
            low = self.submitted + 1
            if self._queue:
                low = self._queue[0].seq
            stepping = self._stepping_from
            return low if stepping is None else min(low, stepping)

    def cancel(self, item: WorkItem) -> None:
        item.cancelled = True
        with self._cond:
            self._cond.notify()

    @property
    def alive(self) -> bool:
        return self._thread is not None and not self._exited and self.failure is None

    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ---- inference thread ------------------------------------------------------------
    def _run(self) -> None:
        prepare_this_thread("inference", self.nice)
        try:
            while True:
                with self._cond:
                    while self._running and not self._queue and not self._active:
                        self._cond.wait()
                    if not self._running:
                        break
                    batch, callbacks = self._form_batch()
                    fresh = [item.seq for item in batch if not item.started]
                    self._stepping_from = min(fresh) if fresh else None
                if batch:
                    callbacks.extend(self._execute(batch))
                self._stepping_from = None
                if callbacks:
                    self.loop.call_soon_threadsafe(_run_callbacks, callbacks)
        except BaseException as error:  # the loop must report its death, not hide it
            self.failure = error
            log.exception("inference thread died")
        finally:
            self._exited = True
            self._fail_everything()

    def _form_batch(self) -> tuple[list[WorkItem], list[Callback]]:
        """Choose this step's items (called with the lock held)."""
        callbacks: list[Callback] = []
        batch, busy = self._running_generations(callbacks)
        now = time.monotonic()
        tokens = 0
        waiting: list[WorkItem] = []
        for position, item in enumerate(self._queue):
            if item.cancelled:
                callbacks.extend(_failure(item, asyncio.CancelledError()))
                continue
            if now > item.deadline:
                callbacks.extend(_failure(item, Timeout("request waited past its deadline")))
                continue
            session = item.session_key
            if session is not None and getattr(session, "deleted", False):
                session_id = str(getattr(session, "id", ""))
                callbacks.extend(_failure(item, SessionNotFound(session_id)))
                continue
            key = id(item.session_key) if item.session_key is not None else None
            if key is not None and key in busy:
                waiting.append(item)
                continue
            cost = item.cost_tokens()
            full = len(batch) >= self.max_batch_size
            if full or (batch and tokens + cost > self.max_batch_tokens):
                waiting.extend(self._queue[position:])
                break
            batch.append(item)
            tokens += cost
            if key is not None:
                busy.add(key)
        self._queue = waiting
        self.metrics.queue_depth.set(len(self._queue))
        return batch, callbacks

    def _running_generations(self, callbacks: list[Callback]) -> tuple[list[WorkItem], set[int]]:
        """This step's running generations (finished ones leave, with their ``Done`` in
        ``callbacks``) and the sessions they hold."""
        busy: set[int] = set()
        still_active: list[WorkItem] = []
        for item in self._active:
            gen = item.generation
            assert gen is not None
            if item.cancelled and gen.finishing is None:
                gen.finishing = FinishReason.CANCELLED
            if gen.finishing is not None and not (gen.keep_state and gen.pending):
                callbacks.append((gen.emit, DoneEvent(gen.finishing)))
                continue
            still_active.append(item)
            busy.add(id(item.session_key))
        # Rotate so that more generations than max_batch_size all make progress.
        batch = still_active[: self.max_batch_size]
        self._active = still_active[len(batch) :] + batch
        return batch, busy

    def _execute(self, batch: list[WorkItem]) -> list[Callback]:
        rows = [item.row() for item in batch]
        started = time.perf_counter()
        try:
            results = self.runner.step(rows)
        except Exception as error:  # a failing batch fails its own items, not the loop
            log.exception("model step failed")
            return [cb for item in batch for cb in _failure(item, error)]
        kind = "decode" if all(len(r.tokens) <= 1 for r in rows) else "prefill"
        self.metrics.batch_compute.labels(kind).observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(kind).observe(len(rows))
        self.metrics.tokens.labels(kind).inc(sum(len(r.tokens) for r in rows))
        self.steps += 1
        callbacks: list[Callback] = []
        generations: list[tuple[WorkItem, RowResult]] = []
        for item, result in zip(batch, results, strict=True):
            if item.generation is None:
                callbacks.append((item.complete, result))
            else:
                generations.append((item, result))
        if generations:
            callbacks.extend(self._advance(generations))
        return callbacks

    def _advance(self, generations: list[tuple[WorkItem, RowResult]]) -> list[Callback]:
        """Sample the next word of every generation that asked for one."""
        callbacks: list[Callback] = []
        sampling = [(item, res) for item, res in generations if res.distribution is not None]
        for item, _ in generations:
            if not item.started:
                item.started = True
                self._active.append(item)
            gen = item.generation
            assert gen is not None
            if gen.finishing is not None:
                gen.pending = []  # the last word is now in the state
        if not sampling:
            return callbacks
        logprobs = torch.stack([res.distribution for _, res in sampling])  # type: ignore[misc]
        logprobs[:, self._banned] = float("-inf")  # never emit <unk>
        params = [item.generation.params for item, _ in sampling]  # type: ignore[union-attr]
        uniforms = torch.stack(
            [
                torch.rand((), generator=item.generation.generator)  # type: ignore[union-attr]
                for item, _ in sampling
            ]
        )
        chosen = sample(logprobs, params, uniforms)
        words = chosen.tolist()
        scores = _scores(logprobs, sampling, chosen)
        eos = self.runner.vocabulary.eos_id
        for j, ((item, _), word) in enumerate(zip(sampling, words, strict=True)):
            gen = item.generation
            assert gen is not None
            logprob, top = scores.get(j, (None, None))
            callbacks.append((gen.emit, TokenEvent(word, gen.produced, logprob, top)))
            gen.produced += 1
            gen.pending = [word]
            if gen.stop_at_eos and word == eos:
                gen.finishing = FinishReason.EOS
            elif gen.produced >= gen.max_tokens:
                gen.finishing = FinishReason.LENGTH
        return callbacks

    def _fail_everything(self) -> None:
        with self._cond:
            error = ServeError("the inference worker stopped")
            callbacks = [cb for item in self._queue + self._active for cb in _failure(item, error)]
            self._queue, self._active = [], []
        if callbacks and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_run_callbacks, callbacks)


Callback = tuple[Callable[[Any], None], Any]
WordScore = tuple[float | None, list[tuple[int, float]] | None]


def _scores(
    logprobs: torch.Tensor, sampling: list[tuple[WorkItem, RowResult]], chosen: torch.Tensor
) -> dict[int, WordScore]:
    """Log-probs for the rows whose generation asked for them (none asked: no work)."""
    asked = [(item.generation.logprobs if item.generation else None) for item, _ in sampling]
    rows = [j for j, k in enumerate(asked) if k is not None]
    if not rows:
        return {}
    top_k = [asked[j] or 0 for j in rows]
    found = word_logprobs(logprobs, rows, chosen, top_k)
    return {j: (value, top) for j, (value, top) in zip(rows, found, strict=True)}


def _run_callbacks(callbacks: list[Callback]) -> None:
    for function, argument in callbacks:
        try:
            function(argument)
        except Exception:
            log.exception("result delivery failed")


def _failure(item: WorkItem, error: BaseException) -> list[Callback]:
    gen = item.generation
    if gen is None:
        return [(item.complete, error)]
    if isinstance(error, asyncio.CancelledError):
        return [(gen.emit, DoneEvent(FinishReason.CANCELLED))]
    return [(gen.emit, DoneEvent(FinishReason.ERROR, error))]
