"""The engine: model, state pool, sessions and the inference worker. Knows no HTTP.

It speaks in word ids: callers (the engine server on behalf of API processes, benchmarks,
tests) normalise text themselves. Every call queues one work item and awaits it under the
request deadline; torch runs only on the worker's thread. Session calls live in
``SessionOps`` (``engine.session_ops``). Configured only by the ``EngineConfig`` it is
handed: no settings module, no environment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import torch

from models.checkpoint import Checkpoint, load
from service.engine.config import EngineConfig, pick_device
from service.engine.durable import DurableSessions
from service.engine.errors import NotReady, Overloaded, ServeError
from service.engine.generation import GenerationStream
from service.engine.metrics import EngineMetrics
from service.engine.model_card import model_card, text_rules
from service.engine.prefix_cache import PrefixCache
from service.engine.prefix_items import cached_item, cached_score_item
from service.engine.runner import ModelRunner
from service.engine.session_cache import CachePool, pool_for_card
from service.engine.session_ops import SessionOps
from service.engine.sessions import SessionRegistry
from service.engine.state_ops import StateOps
from service.engine.state_pool import StatePool
from service.engine.state_token import ModelShape
from service.engine.store import open_store
from service.engine.submit import GenerationRequest, Submitter
from service.engine.work import WorkItem, WorkKind
from service.engine.worker import InferenceWorker

log = logging.getLogger(__name__)


class Engine:
    """Owns the checkpoint, the state pool, the sessions and the inference worker."""

    def __init__(self, config: EngineConfig, metrics: EngineMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or EngineMetrics()
        self.checkpoint: Checkpoint | None = None
        self.runner: ModelRunner | None = None
        self.sessions: SessionRegistry | None = None
        self.durable: DurableSessions | None = None
        self.session_ops: SessionOps | None = None
        self.state_ops: StateOps | None = None
        self.device: torch.device | None = None
        self.submitter = Submitter(config.request_timeout_s)
        self.prefix_cache: PrefixCache | None = None

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Load, warm up and start the worker; ``ready`` turns true only after."""
        self.device = pick_device(self.config.device)
        if self.config.threads > 0:
            torch.set_num_threads(self.config.threads)
        self.checkpoint = await asyncio.to_thread(load, self.config.model_path, self.device)
        self.runner = await asyncio.to_thread(
            ModelRunner,
            self.checkpoint,
            self.device,
            self.config.initial_pool_slots,
            self.config.cuda_graphs,
            self.config.cpu_kernels,
        )
        await asyncio.to_thread(self.runner.warm_up)
        pool = self.runner.pool
        pool.reserve(self.config.pool_reserve_slots(pool.bytes_per_slot))  # no growth copies
        self.runner.caches = self._session_caches(pool)
        self.prefix_cache = PrefixCache.for_pool(self.config.prefix_cache_bytes, pool, self.metrics)
        self.sessions = SessionRegistry(
            pool, self.config.max_sessions, self.config.session_ttl_s, self.runner.caches
        )
        self.submitter.worker = worker = InferenceWorker(
            self.runner,
            asyncio.get_running_loop(),
            self.metrics,
            self.config.max_batch_size,
            self.config.max_batch_tokens,
            self.config.max_queue,
            self.config.inference_nice,
        )
        pool.submitted = lambda: worker.submitted
        pool.settled_below = worker.settled_below
        worker.start()
        await self._start_sessions()
        self.submitter.accepting = True
        self._publish_model_metrics()
        log.info(
            "engine ready: model %s on %s, %d torch thread(s); %s",
            self.model_id,
            self.device,
            torch.get_num_threads(),
            self.runner.kernels,
        )

    async def _start_sessions(self) -> None:
        assert self.runner is not None and self.sessions is not None
        pool, config = self.runner.pool, self.config
        self.durable = DurableSessions(
            open_store(config.session_store),
            self.sessions,
            self.metrics,
            self._checkpoint().weights_sha256,
            (pool.layers, pool.hidden),
            lambda session, restore, writes: self.ops().state_item(session, restore, writes),
            durability=config.session_durability,
            write_behind_interval_s=config.write_behind_interval_s,
            max_resident=config.max_resident_sessions,
        )
        await self.durable.store.ping()  # a wrong URL fails the start, not the first feed
        self.durable.start()
        self.session_ops = SessionOps(
            self.sessions, self.durable, self.submitter, pool, self.metrics, config
        )
        self.session_ops.start()
        shape = ModelShape(
            self._checkpoint().weights_sha256, pool.layers, pool.hidden, pool.cell_size
        )
        self.state_ops = StateOps(self.session_ops, shape, config.state_key)

    def _session_caches(self, pool: StatePool) -> CachePool | None:
        """The rings of sessions' continuous caches, if the card holds tuned numbers."""
        assert self.device is not None
        config = self.config
        return pool_for_card(
            self._checkpoint().card,
            pool.hidden,
            config.session_history,
            config.max_cache_bytes,
            self.device,
            required=config.session_cache,
        )

    def _publish_model_metrics(self) -> None:
        self.metrics.session_cache_capacity_bytes.set(self.config.max_cache_bytes)
        self.metrics.queue_capacity.set(self.config.max_queue)
        self.metrics.sessions_capacity.set(self.config.max_sessions)
        self.metrics.model_info.labels(self.model_id, self.architecture, str(self.device)).set(1)

    async def stop(self) -> None:
        """Stop taking work, store every session state the store lacks, stop the worker."""
        self.submitter.accepting = False
        if self.session_ops is not None:
            await self.session_ops.stop()
        if self.durable is not None:
            worker = self.submitter.worker
            if worker is not None and worker.alive:
                await self.durable.stop()  # flushes while the worker can still snapshot
            else:
                await self.durable.store.close()
        if self.submitter.worker is not None:
            await asyncio.to_thread(self.submitter.worker.stop)

    @property
    def worker(self) -> InferenceWorker | None:
        return self.submitter.worker

    @property
    def ready(self) -> bool:
        return self.health()[0]

    def health(self) -> tuple[bool, str]:
        """(ready, reason) for readiness probes."""
        worker = self.submitter.worker
        if worker is None:
            return False, "model loading"
        if not worker.alive:
            return False, f"inference worker died: {worker.failure!r}"
        if not self.submitter.accepting:
            return False, "engine stopped"
        if self.session_ops is not None and not self.session_ops.store_healthy:
            return False, "session store unavailable"
        return True, "ready"

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id if self.checkpoint else ""

    @property
    def architecture(self) -> str:
        return self.checkpoint.model.config.cell if self.checkpoint else ""

    def model_card(self) -> dict[str, Any]:
        return model_card(self._checkpoint(), str(self.device))

    def text_rules(self) -> dict[str, Any]:
        """What an API process needs to turn text into ids and back."""
        return text_rules(self._checkpoint())

    # ---- stateless -------------------------------------------------------------------
    async def predict(self, ids: list[int], top_k: int) -> list[tuple[int, float]]:
        """The ``top_k`` next words after the sentence start + ``ids``: (id, log-prob).
        Starts from the longest cached prefix of ``ids`` and files the state after them."""
        return (await self.submitter.run(self.predict_item(ids, top_k))).top

    def predict_item(self, ids: list[int], top_k: int) -> WorkItem:
        """``predict``'s work item, for a caller that queues it itself
        (``Submitter.start``); its result's ``top`` is the answer."""
        slot = self._pool_checked().allocate()
        return self._prefix_item(slot, ids, top_k)

    def _prefix_item(
        self, slot: int, ids: list[int], top_k: int, release_slot: bool = True
    ) -> WorkItem:
        pool, cache = self._pool_checked(), self.prefix_cache
        return cached_item(self.submitter, pool, cache, slot, ids, top_k, release_slot)

    async def score(self, ids: list[int]) -> list[float]:
        """The log-prob of each of ``ids`` after the sentence start and the ones before."""
        pool = self._pool_checked()
        slot = pool.allocate()
        item, known = cached_score_item(self.submitter, pool, self.prefix_cache, slot, ids)
        return known + (await self.submitter.run(item)).token_logprobs

    async def score_top(
        self, ids: list[int], top_k: int
    ) -> tuple[list[float], list[list[tuple[int, float]]]]:
        """``score`` plus the ``top_k`` (id, log-prob) that predicted each of ``ids``
        (OpenAI's ``echo`` with ``logprobs``)."""
        pool = self._pool_checked()
        slot = pool.allocate()
        item = self.submitter.item(WorkKind.SCORE, slot, ids, reset=True, token_logprobs=True)
        item.prompt_top_k = top_k
        item.on_finish = lambda _: pool.release(slot)
        result = await self.submitter.run(item)
        return result.token_logprobs, result.prompt_top

    def generate(self, ids: list[int], request: GenerationRequest) -> GenerationStream:
        """Start a stateless generation from the sentence start + ``ids``."""
        pool = self._pool_checked()
        slot = pool.allocate()
        stream = GenerationStream(self.submitter.cancel)
        stream.on_done(lambda: pool.release(slot))
        try:
            self.submitter.start_generation(stream, slot, ids, request, reset=True, session=None)
        except ServeError:
            pool.release(slot)
            raise
        return stream

    async def generate_cached(self, ids: list[int], request: GenerationRequest) -> GenerationStream:
        """``generate`` with the prompt's state from (and into) the prefix cache: one item
        primes the slot (cached prefix state + the rest of the prompt), then the generation
        starts from the slot. Without a cache (or a prompt), plain ``generate``."""
        cache = self.prefix_cache
        if cache is None or not cache.enabled or not ids or request.max_tokens == 0:
            return self.generate(ids, request)
        pool = self._pool_checked()
        slot = pool.allocate()
        try:
            await self.submitter.run(self._prefix_item(slot, ids, 0, release_slot=False))
            stream = GenerationStream(self.submitter.cancel)
            self.submitter.start_generation(stream, slot, [], request, reset=False, session=None)
        except BaseException:
            pool.release(slot)
            raise
        stream.on_done(lambda: pool.release(slot))
        return stream

    # ---- plumbing --------------------------------------------------------------------
    def _pool_checked(self) -> StatePool:
        worker = self.submitter.accepting_worker()  # not_ready before a slot is taken
        if worker.queue_depth() >= worker.max_queue:  # before any prefix-cache work
            raise Overloaded(f"queue full ({worker.max_queue} waiting)")
        assert self.runner is not None
        return self.runner.pool

    def _checkpoint(self) -> Checkpoint:
        if self.checkpoint is None:
            raise NotReady("model not loaded yet")
        return self.checkpoint

    def ops(self) -> SessionOps:
        if self.session_ops is None:
            raise NotReady("model not loaded yet")
        return self.session_ops

    def states(self) -> StateOps:
        """Fork, rewind, export and import (``service.engine.state_ops``)."""
        if self.state_ops is None:
            raise NotReady("model not loaded yet")
        return self.state_ops

    async def flush_sessions(self) -> None:
        """Store every session state the store lacks (drain hand-off)."""
        if self.durable is not None:
            await self.durable.flush()


__all__ = ["Engine", "EngineConfig", "GenerationRequest", "pick_device"]
