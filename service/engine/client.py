"""``EngineClient``: how an API process talks to the engine process. The only engine module
the API imports.

Text is normalised here (the API process has the model's normalizer and vocabulary,
sent by the engine at connect), word ids cross a ZeroMQ DEALER socket in batches, and
answers come back as ids that are turned into words here. Requests made during one
event-loop turn leave in one message. If the engine process dies, every waiting call
fails with ``NotReady`` at once and ``health()`` says so (a pidfd is watched).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import zmq
import zmq.asyncio

from models.detokenize import detokenize
from models.normalizer import Normalizer
from models.tokenizer import Tokenizer
from models.vocabulary import Vocabulary
from service.engine import errors, wire
from service.engine.errors import (
    InvalidRequest,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServeError,
    SessionBusy,
    SessionIncompatible,
    SessionNotFound,
    Timeout,
    Unauthorized,
)
from service.engine.params import FinishReason, GenerationRequest, SamplingParams
from service.engine.results import (
    GeneratedWord,
    Prediction,
    Score,
    SessionInfo,
    SessionStep,
    WordProbability,
    word_pieces,
)

__all__ = [
    "EngineClient",
    "FinishReason",
    "GeneratedWord",
    "GenerationRequest",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "Prediction",
    "SamplingParams",
    "Score",
    "ServeError",
    "SessionBusy",
    "SessionIncompatible",
    "SessionInfo",
    "SessionNotFound",
    "SessionStep",
    "Timeout",
    "Unauthorized",
    "WordProbability",
    "errors",
    "word_pieces",
]
log = logging.getLogger(__name__)
SPECIAL_WORDS = ("<unk>", "<eos>")
HEALTH_TIMEOUT_S = 1.0
GRACE_S = 5.0  # past the engine's own deadline, a call gives up on a wedged engine


class EngineClient:
    def __init__(self, address: str, request_timeout_s: float = 30.0) -> None:
        self.address = address
        self.request_timeout_s = request_timeout_s
        self.card: dict[str, Any] = {}
        self.tokenizer: Tokenizer | None = None
        self.dead_reason: str | None = None
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[wire.Reply]] = {}
        self._outbox: list[wire.Request] = []
        self._flush_scheduled = False
        # Made by connect(): an app built but never started (a test) holds no ZeroMQ context.
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._pidfd: int | None = None

    # ---- lifecycle -------------------------------------------------------------------
    async def connect(self, timeout_s: float = 30.0) -> None:
        """Connect, learn the model and its text rules, and watch the engine's process."""
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.connect(self.address)
        self._receiver = asyncio.create_task(self._receive(), name="engine-client-receive")
        hello = await asyncio.wait_for(self._call(wire.Hello(0)), timeout_s)
        self.card = hello["card"]
        self.tokenizer = Tokenizer(
            Normalizer.from_config(hello["normalizer"]), Vocabulary(hello["vocabulary"])
        )
        self._watch(int(hello["pid"]))

    def _watch(self, pid: int) -> None:
        """Notice the engine's death the moment it happens (Linux pidfd)."""
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(pid)
            asyncio.get_running_loop().add_reader(self._pidfd, self._engine_died)

    def _engine_died(self) -> None:
        self._stop_watching()
        self.fail_all("the engine process stopped")

    def fail_all(self, reason: str) -> None:
        """Mark the engine gone and fail every waiting call and stream."""
        self.dead_reason = reason
        log.error("engine unavailable: %s", reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NotReady(reason))
        self._pending.clear()
        for queue in self._streams.values():
            queue.put_nowait(wire.Failure(0, "not_ready", reason))

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def close(self) -> None:
        self._stop_watching()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        if self._socket is not None:
            self._socket.close()
        if self._context is not None:
            self._context.term()
        self._socket = self._context = None

    # ---- health and model ------------------------------------------------------------
    async def health(self) -> tuple[bool, str]:
        """Ask the engine (a dead or wedged engine answers for itself: not ready)."""
        if self.dead_reason is not None:
            return False, self.dead_reason
        try:
            ready, reason = await asyncio.wait_for(self._call(wire.Health(0)), HEALTH_TIMEOUT_S)
        except TimeoutError:
            return False, "the engine is not answering"
        except ServeError as error:
            return False, error.message
        return bool(ready), str(reason)

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    @property
    def model_id(self) -> str:
        return str(self.card.get("id", ""))

    def model_card(self) -> dict[str, Any]:
        return dict(self.card)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        """The words the model will see (``<unk>`` for unknown ones) and their ids."""
        if self.tokenizer is None:
            raise NotReady("not connected to the engine yet")
        return self.tokenizer.encode(text)

    def word(self, token_id: int) -> str:
        assert self.tokenizer is not None
        return self.tokenizer.vocabulary.word(token_id)

    # ---- stateless -------------------------------------------------------------------
    async def predict(self, text: str, k: int = 5, skip_special: bool = False) -> Prediction:
        words, ids = self.encode(text)
        top = await self._call(wire.Predict(0, ids, _top_k(k, skip_special)))
        return Prediction(words, self._predictions(top, k, skip_special))

    async def score(self, text: str, top_k: int = 0) -> Score:
        """Each token's log-prob; ``top_k`` > 0: also the likeliest words before each."""
        words, ids = self.encode(text)
        if not top_k:
            return Score(words, await self._call(wire.Score(0, ids)))
        logprobs, tops = await self._call(wire.Score(0, ids, top_k))
        return Score(words, logprobs, [self._words(top) for top in tops])

    async def generate(self, text: str, request: GenerationRequest) -> Generation:
        """Start a stateless generation from the sentence start + ``text``."""
        words, ids = self.encode(text)
        return self._start_generation(wire.Generate(0, ids, _sampling(request)), words)

    # ---- sessions --------------------------------------------------------------------
    async def create_session(
        self, text: str = "", k: int = 5, owner: str | None = None, skip_special: bool = False
    ) -> SessionStep:
        words, ids = self.encode(text)
        step = await self._call(wire.CreateSession(0, ids, _top_k(k, skip_special), owner))
        return self._session_step(step, words, k, skip_special)

    async def feed(
        self,
        session_id: str,
        text: str,
        k: int = 5,
        owner: str | None = None,
        skip_special: bool = False,
    ) -> SessionStep:
        words, ids = self.encode(text)
        step = await self._call(wire.Feed(0, session_id, ids, _top_k(k, skip_special), owner))
        return self._session_step(step, words, k, skip_special)

    async def reset_session(self, session_id: str, owner: str | None = None) -> SessionInfo:
        return SessionInfo(*await self._call(wire.ResetSession(0, session_id, owner)))

    async def describe_session(self, session_id: str, owner: str | None = None) -> SessionInfo:
        return SessionInfo(*await self._call(wire.DescribeSession(0, session_id, owner)))

    async def remove_session(self, session_id: str, owner: str | None = None) -> None:
        await self._call(wire.DeleteSession(0, session_id, owner))

    async def fork_session(
        self, session_id: str, k: int = 5, owner: str | None = None, skip_special: bool = False
    ) -> SessionStep:
        """A new session (same owner) with a copy of this one's state, position, history."""
        step = await self._call(wire.ForkSession(0, session_id, _top_k(k, skip_special), owner))
        return self._session_step(step, [], k, skip_special)

    async def rewind_session(
        self,
        session_id: str,
        tokens: int,
        k: int = 5,
        owner: str | None = None,
        skip_special: bool = False,
    ) -> SessionStep:
        """Undo the last ``tokens`` words (within the kept history)."""
        top_k = _top_k(k, skip_special)
        step = await self._call(wire.RewindSession(0, session_id, tokens, top_k, owner))
        return self._session_step(step, [], k, skip_special)

    async def export_state(self, session_id: str, owner: str | None = None) -> tuple[str, int]:
        """(signed state token, position) of the session."""
        token, position = await self._call(wire.ExportState(0, session_id, owner))
        return token, position

    async def import_state(
        self, state: str, k: int = 5, owner: str | None = None, skip_special: bool = False
    ) -> SessionStep:
        """A new live session from a state token."""
        step = await self._call(wire.ImportState(0, state, _top_k(k, skip_special), owner))
        return self._session_step(step, [], k, skip_special)

    async def attach_stream(self, session_id: str | None, owner: str | None) -> SessionInfo:
        """Claim the session (a new one for ``None``) for one live stream."""
        return SessionInfo(*await self._call(wire.AttachStream(0, session_id, owner)))

    async def detach_stream(self, session_id: str) -> None:
        with contextlib.suppress(ServeError):
            await self._call(wire.DetachStream(0, session_id))

    async def generate_in_session(
        self, session_id: str, owner: str | None, request: GenerationRequest
    ) -> Generation:
        """Continue a session with generated words; they become part of its history and are
        stored before the generation says it is done."""
        message = wire.Generate(0, [], _sampling(request), session_id, owner)
        return self._start_generation(message, [])

    async def flush_sessions(self) -> None:
        await self._call(wire.FlushSessions(0))

    # ---- answers ---------------------------------------------------------------------
    def _words(self, top: list[Any]) -> list[WordProbability]:
        """``[[ids], [log-probs]]`` -> words."""
        ids, logprobs = top
        return [WordProbability(self.word(i), lp) for i, lp in zip(ids, logprobs, strict=True)]

    def _predictions(self, top: list[Any], k: int, skip_special: bool) -> list[WordProbability]:
        ids, logprobs = top
        out = [WordProbability(self.word(i), lp) for i, lp in zip(ids, logprobs, strict=True)]
        if skip_special:
            out = [p for p in out if p.word not in SPECIAL_WORDS]
        return out[:k]

    def _session_step(
        self, step: list[Any], words: list[str], k: int, skip_special: bool
    ) -> SessionStep:
        session_id, position, logprob, ids, logprobs = step
        predictions = self._predictions([ids, logprobs], k, skip_special)
        return SessionStep(session_id, position, words, logprob, predictions)

    # ---- channel ---------------------------------------------------------------------
    async def _call(self, message: Any) -> Any:
        if self.dead_reason is not None:
            raise NotReady(self.dead_reason)
        if self._socket is None:
            raise NotReady("not connected to the engine")
        message.rid = rid = next(self._rids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = future
        self._send(message)
        # A plain timer, not wait_for: wait_for costs a task per call (10 % of an API
        # process's CPU under load, measured with py-spy).
        timer = loop.call_later(self.request_timeout_s + GRACE_S, _give_up, future)
        try:
            return await future
        except asyncio.CancelledError:
            if rid in self._pending:
                self._send(wire.Cancel(rid))
            raise
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    def _start_generation(self, message: wire.Generate, prompt: list[str]) -> Generation:
        if self.dead_reason is not None:
            raise NotReady(self.dead_reason)
        message.rid = rid = next(self._rids)
        queue: asyncio.Queue[wire.Reply] = asyncio.Queue()
        self._streams[rid] = queue
        self._send(message)
        return Generation(self, rid, queue, prompt)

    def _send(self, message: Any) -> None:
        self._outbox.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox or self._socket is None:  # closed meanwhile: calls fail by timeout
            return
        try:
            payload = wire.ENCODER.encode(outbox)
        except (OverflowError, TypeError, ValueError):
            payload = wire.ENCODER.encode(self._encodable(outbox))
        self._socket.send(payload, copy=False)

    def _encodable(self, outbox: list[Any]) -> list[Any]:
        """The messages that encode; the others' calls fail at once (a value the wire
        cannot carry, such as an integer past 64 bits, must not sink the whole batch)."""
        kept = []
        for message in outbox:
            try:
                wire.ENCODER.encode(message)
            except (OverflowError, TypeError, ValueError) as error:
                self._fail(message.rid, InvalidRequest(f"a value is out of range: {error}"))
                continue
            kept.append(message)
        return kept

    def _fail(self, rid: int, error: ServeError) -> None:
        future = self._pending.pop(rid, None)
        if future is not None and not future.done():
            future.set_exception(error)
        queue = self._streams.get(rid)
        if queue is not None:
            queue.put_nowait(wire.Failure(rid, error.code, error.message))

    async def _receive(self) -> None:
        while True:
            assert self._socket is not None
            payload = await self._socket.recv()
            for reply in wire.REPLIES.decode(payload):
                self._deliver(reply)

    def _deliver(self, reply: wire.Reply) -> None:
        queue = self._streams.get(reply.rid)
        if queue is not None:
            queue.put_nowait(reply)
            if isinstance(reply, wire.Done | wire.Failure):
                self._streams.pop(reply.rid, None)
            return
        future = self._pending.get(reply.rid)
        if future is None or future.done():
            return
        if isinstance(reply, wire.Result):
            future.set_result(reply.value)
        elif isinstance(reply, wire.Failure):
            future.set_exception(errors.from_code(reply.code, reply.message, reply.details))

    def forget_stream(self, rid: int, cancel: bool) -> None:
        if self._streams.pop(rid, None) is not None and cancel and self.dead_reason is None:
            self._send(wire.Cancel(rid))


class Generation:
    """A running generation: iterate for ``GeneratedWord``s; afterwards ``finish_reason``
    (a ``FinishReason``), ``text`` and, for a session, its ``position`` are set. Leaving the
    iteration early cancels the generation in the engine."""

    def __init__(
        self, client: EngineClient, rid: int, queue: asyncio.Queue[wire.Reply], prompt: list[str]
    ) -> None:
        self.prompt_tokens = prompt
        self.words: list[str] = []
        self.finish_reason: FinishReason | None = None
        self.position: int | None = None
        self._client = client
        self._rid = rid
        self._queue = queue

    @property
    def text(self) -> str:
        return detokenize(self.words)  # for display; ``words`` stay the model's words

    def cancel(self) -> None:
        if self.finish_reason is None:
            self._client._send(wire.Cancel(self._rid))

    async def __aiter__(self) -> AsyncIterator[GeneratedWord]:
        try:
            while True:
                reply = await self._queue.get()
                if isinstance(reply, wire.Token):
                    word = self._client.word(reply.token_id)
                    self.words.append(word)
                    top = None if reply.top is None else self._client._words(reply.top)
                    yield GeneratedWord(word, reply.index, reply.position, reply.logprob, top)
                elif isinstance(reply, wire.Done):
                    self.position = reply.position
                    self.finish_reason = FinishReason(reply.reason)
                    return
                elif isinstance(reply, wire.Failure):
                    raise errors.from_code(reply.code, reply.message, reply.details)
        finally:
            self._client.forget_stream(self._rid, cancel=self.finish_reason is None)

    async def collect(self) -> list[GeneratedWord]:
        return [word async for word in self]


def _give_up(future: asyncio.Future[Any]) -> None:
    """A wedged engine: the call fails with ``timeout`` rather than waiting for ever."""
    if not future.done():
        future.set_exception(Timeout("the engine did not answer in time"))


def _top_k(k: int, skip_special: bool) -> int:
    return k + (len(SPECIAL_WORDS) if skip_special and k else 0)


def _sampling(request: GenerationRequest) -> wire.Sampling:
    params = request.sampling
    return wire.Sampling(
        request.max_tokens,
        float(params.temperature),
        params.top_k,
        float(params.top_p),
        request.seed,
        request.stop_at_eos,
        request.logprobs,
    )
