"""The engine: a narrow async interface over the inference worker. Knows no HTTP.

Callers (the API, benchmarks, tests) use ``predict``, ``score``, ``generate`` and the
session methods; each turns text into tokens once, checks it, queues one work item and
awaits it under the request deadline. Torch runs only on the worker's thread.
Session states can also live in a session store (``service.durable``, ``service.store``),
so that any replica can resume a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import Checkpoint, load
from models.tokenizer import Tokenizer
from service.cpu_sharing import torch_threads
from service.durable import Change, Durability, DurableSessions, SessionMoved
from service.errors import (
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServeError,
    SessionBusy,
    SessionNotFound,
    Timeout,
)
from service.generation import GenerationStream
from service.metrics import Metrics
from service.results import Prediction, Score, SessionInfo, SessionStep, WordProbability
from service.runner import ModelRunner, Row, RowResult
from service.sampling import SamplingParams
from service.sessions import Session, SessionRegistry
from service.state_pool import StatePool
from service.store import SessionStore, open_store
from service.work import DoneEvent, FinishReason, Generation, TokenEvent, WorkItem, WorkKind
from service.worker import InferenceWorker

log = logging.getLogger(__name__)
SPECIAL_WORDS = ("<unk>", "<eos>")
INLINE_ENCODE_CHARS = 2000  # longer texts are normalised on a thread
RELOAD_TRIES = 3  # feeds of a session that moved meanwhile


@dataclass(frozen=True)
class EngineConfig:
    model_path: Path
    device: str = "auto"
    max_batch_size: int = 256
    max_batch_tokens: int = 8192
    max_queue: int = 1024
    request_timeout_s: float = 30.0
    session_ttl_s: float = 3600.0
    max_sessions: int = 100_000
    session_sweep_interval_s: float = 5.0
    max_text_chars: int = 100_000
    initial_pool_slots: int = 1024
    threads: int = 0
    session_store: str = "memory"  # or redis://host:port/db
    session_durability: Durability = "sync"
    write_behind_interval_s: float = 0.05
    max_resident_sessions: int = 0  # 0: no tiering (every live session keeps its slot)


@dataclass(frozen=True)
class GenerationRequest:
    max_tokens: int = 20
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    stop_at_eos: bool = True


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("LSTM_SERVE_DEVICE=cuda but no CUDA device is available")
    return torch.device(name)


class Engine:
    """Owns the checkpoint, the state pool, the sessions and the inference worker."""

    def __init__(self, config: EngineConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.checkpoint: Checkpoint | None = None
        self.tokenizer: Tokenizer | None = None
        self.runner: ModelRunner | None = None
        self.worker: InferenceWorker | None = None
        self.sessions: SessionRegistry | None = None
        self.durable: DurableSessions | None = None
        self.device: torch.device | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._ready = False

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Load, warm up and start the worker; ``ready`` turns true only after."""
        self.device = pick_device(self.config.device)
        torch.set_num_threads(torch_threads(self.config.threads))
        self.checkpoint = await asyncio.to_thread(load, self.config.model_path, self.device)
        self.tokenizer = Tokenizer(self.checkpoint.normalizer, self.checkpoint.vocabulary)
        self.runner = await asyncio.to_thread(
            ModelRunner, self.checkpoint, self.device, self.config.initial_pool_slots
        )
        await asyncio.to_thread(self._warm_up)
        self.sessions = SessionRegistry(
            self.runner.pool, self.config.max_sessions, self.config.session_ttl_s
        )
        self.worker = InferenceWorker(
            self.runner,
            asyncio.get_running_loop(),
            self.metrics,
            self.config.max_batch_size,
            self.config.max_batch_tokens,
            self.config.max_queue,
        )
        self.worker.start()
        self.durable = self._durable(open_store(self.config.session_store))
        await self.durable.store.ping()  # a wrong URL fails the start, not the first feed
        self.durable.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="session-sweeper")
        self.metrics.queue_capacity.set(self.config.max_queue)
        self.metrics.sessions_capacity.set(self.config.max_sessions)
        self.metrics.model_info.labels(self.model_id, self.architecture, str(self.device)).set(1)
        self._ready = True
        log.info(
            "engine ready: model %s on %s, %d torch thread(s)",
            self.model_id,
            self.device,
            torch.get_num_threads(),
        )

    async def stop(self) -> None:
        self._ready = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.durable is not None:
            if self.worker is not None and self.worker.alive:
                await self.durable.stop()  # flushes while the worker can still snapshot
            else:
                await self.durable.store.close()
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop)

    def _durable(self, store: SessionStore) -> DurableSessions:
        assert self.runner is not None and self.sessions is not None
        pool, config = self.runner.pool, self.config
        return DurableSessions(
            store,
            self.sessions,
            self.metrics,
            self._checkpoint().weights_sha256,
            (pool.layers, pool.hidden),
            self._state_item,
            durability=config.session_durability,
            write_behind_interval_s=config.write_behind_interval_s,
            max_resident=config.max_resident_sessions,
        )

    async def flush_sessions(self) -> None:
        """Store every session state the store lacks (drain hand-off)."""
        if self.durable is not None:
            await self.durable.flush()

    def _warm_up(self) -> None:
        assert self.runner is not None
        slots = [self.runner.pool.allocate() for _ in range(4)]
        for lengths in ([1], [1, 1, 1, 1], [12, 3, 1, 7]):
            rows = [
                Row(slots[i], [1] * n, reset=True, top_k=5, token_logprobs=True)
                for i, n in enumerate(lengths)
            ]
            self.runner.step(rows)
        for slot in slots:
            self.runner.pool.release(slot)

    @property
    def ready(self) -> bool:
        return self._ready and self.worker is not None and self.worker.alive

    def health(self) -> tuple[bool, str]:
        """(ready, reason) for readiness probes."""
        if self.worker is None:
            return False, "model loading"
        if not self.worker.alive:
            return False, f"inference worker died: {self.worker.failure!r}"
        if not self._ready:
            return False, "engine stopped"
        return True, "ready"

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id if self.checkpoint else ""

    @property
    def architecture(self) -> str:
        return self.checkpoint.model.config.cell if self.checkpoint else ""

    def model_card(self) -> dict[str, Any]:
        assert self.checkpoint is not None
        model, card = self.checkpoint.model, self.checkpoint.card
        config = model.config
        return {
            "id": self.model_id,
            "architecture": config.cell,
            "cell": config.cell,
            "layers": config.num_layers,
            "hidden_size": config.hidden_size,
            "embedding_size": config.embedding_size,
            "vocab_size": config.vocab_size,
            "parameters": model.parameter_count(),
            "tied_weights": config.tied,
            "training_data": card.get("data", {}).get("name"),
            "normalizer": self.checkpoint.normalizer.kind,
            "valid_perplexity": card.get("valid_perplexity"),
            "test_perplexity": card.get("test_perplexity"),
            "device": str(self.device),
            "dtype": str(model.embedding.weight.dtype).split(".")[-1],
            "weights_sha256": self.checkpoint.weights_sha256,
        }

    # ---- text ------------------------------------------------------------------------
    def encode(self, text: str) -> tuple[list[str], list[int]]:
        """Normalise ``text`` into (words, ids); raises before any work is queued."""
        if len(text) > self.config.max_text_chars:
            raise PayloadTooLarge(
                f"text has {len(text)} characters; the limit is {self.config.max_text_chars}"
            )
        if self.tokenizer is None:
            raise NotReady("model not loaded yet")
        return self.tokenizer.encode(text)

    async def _admit_and_encode(self, text: str) -> tuple[list[str], list[int]]:
        """Refuse at once when full (before any normalising), then encode; long texts are
        normalised off the event loop."""
        worker = self._worker()
        if worker.queue_depth() >= worker.max_queue:
            raise Overloaded(f"queue full ({worker.max_queue} waiting)")
        if len(text) > INLINE_ENCODE_CHARS:
            return await asyncio.to_thread(self.encode, text)
        return self.encode(text)

    def _predictions(self, result: RowResult, k: int, skip_special: bool) -> list[WordProbability]:
        vocabulary = self._checkpoint().vocabulary
        out = [WordProbability(vocabulary.word(i), lp) for i, lp in result.top]
        if skip_special:
            out = [p for p in out if p.word not in SPECIAL_WORDS]
        return out[:k]

    # ---- stateless -------------------------------------------------------------------
    async def predict(self, text: str, k: int = 5, skip_special: bool = False) -> Prediction:
        words, ids = await self._admit_and_encode(text)
        slot = self._pool().allocate()
        item = self._item(
            WorkKind.PREDICT,
            slot,
            ids,
            reset=True,
            top_k=k + (len(SPECIAL_WORDS) if skip_special else 0),
        )
        item.on_finish = lambda _: self._pool().release(slot)
        result = await self._run(item)
        return Prediction(words, self._predictions(result, k, skip_special))

    async def score(self, text: str) -> Score:
        words, ids = await self._admit_and_encode(text)
        slot = self._pool().allocate()
        item = self._item(WorkKind.SCORE, slot, ids, reset=True, token_logprobs=True)
        item.on_finish = lambda _: self._pool().release(slot)
        result = await self._run(item)
        return Score(words, result.token_logprobs)

    async def generate(self, text: str, request: GenerationRequest) -> GenerationStream:
        """Start a stateless generation from the sentence start + ``text``."""
        words, ids = await self._admit_and_encode(text)
        pool = self._pool()
        slot = pool.allocate()
        stream = GenerationStream(words, self._checkpoint().vocabulary, self._cancel, None)
        stream.on_done(lambda: pool.release(slot))
        try:
            self._start_generation(stream, slot, ids, request, reset=True, session=None)
        except ServeError:
            pool.release(slot)
            raise
        return stream

    # ---- sessions --------------------------------------------------------------------
    async def create_session(
        self, text: str = "", k: int = 5, owner: str | None = None, skip_special: bool = False
    ) -> SessionStep:
        words, ids = await self._admit_and_encode(text)
        session = self._registry().create(owner)
        self.metrics.sessions_created.inc()
        self._update_session_gauge()
        try:
            step = await self._feed(session, ids, words, k, skip_special, reset=True)
        except BaseException:
            self._registry().delete(session)
            self._update_session_gauge()
            raise
        await self._durable_sessions().evict_idle()
        return step

    async def feed(
        self,
        session_id: str,
        text: str,
        k: int = 5,
        owner: str | None = None,
        skip_special: bool = False,
    ) -> SessionStep:
        session = await self.open_session(session_id, owner)
        words, ids = await self._admit_and_encode(text)
        return await self._feed_retrying(session, ids, words, k, skip_special, reset=False)

    async def reset_session(self, session_id: str, owner: str | None = None) -> SessionInfo:
        session = await self.open_session(session_id, owner)
        step = await self._feed_retrying(session, [], [], 0, False, reset=True)
        return self._info(session, step.position)

    async def describe_session(self, session_id: str, owner: str | None = None) -> SessionInfo:
        """Position and timestamps of the caller's session, held here or in the store."""
        return self._info(await self.open_session(session_id, owner, verify=True))

    async def open_session(
        self, session_id: str, owner: str | None = None, verify: bool = False
    ) -> Session:
        """The caller's session: held here, or resumed from the session store (``verify``:
        reload it if another replica stored a newer state meanwhile)."""
        self._worker()
        session = await self._durable_sessions().resolve(session_id, owner, verify)
        self._update_session_gauge()
        return session

    async def remove_session(self, session_id: str, owner: str | None = None) -> None:
        """Delete a session here and in the session store."""
        await self._durable_sessions().delete(session_id, owner)
        self._update_session_gauge()

    async def persist_session(self, session: Session) -> None:
        """Store ``session``'s state if the store lacks it (after a session generation)."""
        await self._durable_sessions().persist(session)

    def delete_session(self, session_id: str, owner: str | None = None) -> None:
        """Delete a session held here (``remove_session`` also deletes the stored copy)."""
        registry = self._registry()
        registry.delete(registry.get(session_id, owner))
        self._update_session_gauge()

    def session_info(self, session_id: str, owner: str | None = None) -> SessionInfo:
        """Like ``describe_session`` for a session held here."""
        return self._info(self._registry().get(session_id, owner))

    def _info(self, session: Session, position: int | None = None) -> SessionInfo:
        """``position``: the one right after the caller's own step, if it had one."""
        return SessionInfo(
            session.id,
            session.position if position is None else position,
            session.created_at,
            session.last_used_at,
            self._registry().expires_at(session),
        )

    def get_session(self, session_id: str, owner: str | None = None) -> Session:
        return self._registry().get(session_id, owner)

    def generate_in_session(self, session: Session, request: GenerationRequest) -> GenerationStream:
        """Continue ``session`` with generated words; they become part of its history.

        The words are stored with the session by ``persist_session`` (the stream awaits it
        before its ``done``)."""
        registry = self._registry()
        if session.deleted:
            raise SessionNotFound(session.id)
        stream = GenerationStream([], self._checkpoint().vocabulary, self._cancel, session.position)
        registry.begin(session)
        stream.on_done(lambda: registry.end(session))
        try:
            self._start_generation(stream, session.slot, [], request, reset=False, session=session)
        except ServeError:
            registry.end(session)
            raise
        return stream

    async def _feed_retrying(
        self,
        session: Session,
        ids: list[int],
        words: list[str],
        k: int,
        skip_special: bool,
        reset: bool,
    ) -> SessionStep:
        """``_feed``; when another replica moved the session on (or it left the pool between
        its lookup and this feed), reload it and feed again."""
        for _ in range(RELOAD_TRIES):
            try:
                return await self._feed(session, ids, words, k, skip_special, reset)
            except SessionMoved:
                session = await self.open_session(session.id, session.owner)
        raise SessionBusy(f"session {session.id!r} is being fed by another replica")

    async def _feed(
        self,
        session: Session,
        ids: list[int],
        words: list[str],
        k: int,
        skip_special: bool,
        reset: bool,
    ) -> SessionStep:
        registry, durable = self._registry(), self._durable_sessions()
        if session.deleted and durable.resumable:
            raise SessionMoved("left the state pool")  # evicted after its lookup: reload
        top_k = k + (len(SPECIAL_WORDS) if skip_special and k else 0)
        item = self._item(
            WorkKind.RESET if reset and not ids else WorkKind.FEED,
            session.slot,
            ids,
            reset=reset,
            top_k=top_k,
            token_logprobs=bool(ids),
            session=session,
        )
        item.capture_state = durable.persistent
        changes: list[Change] = []

        def finish(outcome: Any) -> None:
            if isinstance(outcome, RowResult):
                session.position = len(ids) if reset else session.position + len(ids)
                changes.append(durable.changed(session))
            registry.end(session)

        item.on_finish = finish
        registry.begin(session)
        result = await self._run(item)
        await durable.commit(session, changes[0], result.state)
        return SessionStep(
            session.id,
            changes[0].position,  # not session.position: later feeds may have run meanwhile
            words,
            sum(result.token_logprobs),
            self._predictions(result, k, skip_special),
        )

    async def _state_item(
        self, session: Session, restore: tuple[bytes, bytes] | None
    ) -> tuple[RowResult, Change]:
        """Write ``restore`` into the session's slot, or (None) read the slot's state."""
        registry = self._registry()
        item = self._item(
            WorkKind.RESTORE if restore else WorkKind.SNAPSHOT, session.slot, [], session=session
        )
        item.restore, item.capture_state = restore, restore is None
        changes: list[Change] = []

        def finish(_: Any) -> None:
            changes.append(Change(session.version, session.position, session.epoch))
            registry.end(session)

        item.on_finish = finish
        registry.begin(session)
        result = await self._run(item, while_stopping=True)
        return result, changes[0]

    # ---- plumbing --------------------------------------------------------------------
    def _item(
        self,
        kind: WorkKind,
        slot: int,
        ids: list[int],
        *,
        reset: bool = False,
        top_k: int = 0,
        token_logprobs: bool = False,
        session: Session | None = None,
    ) -> WorkItem:
        loop = asyncio.get_running_loop()
        return WorkItem(
            kind,
            slot,
            ids,
            time.monotonic() + self.config.request_timeout_s,
            future=loop.create_future(),
            session_key=session,
            reset=reset,
            top_k=top_k,
            token_logprobs=token_logprobs,
        )

    async def _run(self, item: WorkItem, while_stopping: bool = False) -> RowResult:
        """Queue ``item`` and await its result (``while_stopping``: also while the engine
        stops, as long as the worker lives — for the final flush of session states)."""
        worker = self._worker() if not while_stopping else self._live_worker()
        try:
            worker.submit(item)
        except ServeError:
            if item.on_finish is not None:
                item.on_finish(None)
            raise
        future = item.future
        assert future is not None
        # A plain timer rather than wait_for(shield(...)): two fewer tasks per request.
        remaining = max(0.0, item.deadline - time.monotonic())
        timer = asyncio.get_running_loop().call_later(remaining, self._expire, future)
        try:
            return await future
        except (Timeout, asyncio.CancelledError):
            worker.cancel(item)
            raise
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(Timeout(f"no result within {self.config.request_timeout_s}s"))

    def _start_generation(
        self,
        stream: GenerationStream,
        slot: int,
        ids: list[int],
        request: GenerationRequest,
        *,
        reset: bool,
        session: Session | None,
    ) -> None:
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed)

        def emit(event: Any) -> None:
            if session is not None and isinstance(event, TokenEvent):
                session.position += 1
                session.version += 1  # the store lacks this state until persist_session
            stream.emit(event)

        generation = Generation(
            request.sampling,
            generator,
            request.max_tokens,
            request.stop_at_eos,
            keep_state=session is not None,
            emit=emit,
        )
        item = WorkItem(
            WorkKind.GENERATE,
            slot,
            ids,
            time.monotonic() + self.config.request_timeout_s,
            session_key=session,
            reset=reset,
            generation=generation,
        )
        stream.item = item
        if request.max_tokens == 0:
            stream.emit(DoneEvent(FinishReason.LENGTH))
            return
        self._worker().submit(item)

    def _cancel(self, item: WorkItem) -> None:
        if self.worker is not None:
            self.worker.cancel(item)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.session_sweep_interval_s)
            registry, durable = self._registry(), self._durable_sessions()
            for session in registry.expired():
                if await durable.expire(session):
                    self.metrics.sessions_expired.inc()
            durable.prune()
            self._update_session_gauge()

    def _update_session_gauge(self) -> None:
        self.metrics.sessions_live.set(len(self._registry()))

    def _checkpoint(self) -> Checkpoint:
        if self.checkpoint is None:
            raise NotReady("model not loaded yet")
        return self.checkpoint

    def _live_worker(self) -> InferenceWorker:
        if self.worker is None or not self.worker.alive:
            raise NotReady("the inference worker is not running")
        return self.worker

    def _worker(self) -> InferenceWorker:
        if self.worker is None or not self._ready:
            raise NotReady("the engine is not running")
        if not self.worker.alive:
            raise NotReady("the inference worker died")
        return self.worker

    def _pool(self) -> StatePool:
        if self.runner is None:
            raise NotReady("model not loaded yet")
        return self.runner.pool

    def _durable_sessions(self) -> DurableSessions:
        if self.durable is None:
            raise NotReady("model not loaded yet")
        return self.durable

    def _registry(self) -> SessionRegistry:
        if self.sessions is None:
            raise NotReady("model not loaded yet")
        return self.sessions
