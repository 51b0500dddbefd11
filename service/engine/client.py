"""``EngineClient``: how an API process talks to the engine process. The only engine module
the API imports.

Text is normalised here (the API process has the model's normalizer and vocabulary,
sent by the engine at connect), word ids cross the channel (``service.engine.channel``:
ZeroMQ, batched per event-loop turn), and answers come back as ids that are turned into
words here. If the engine process dies, every waiting call fails with ``NotReady`` at
once and ``health()`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from models.normalizer import Normalizer
from models.tokenizer import Tokenizer
from models.vocabulary import Vocabulary
from service.engine import errors, wire
from service.engine.channel import Channel
from service.engine.client_generation import Generation
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
    "Generation",
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


class EngineClient:
    def __init__(self, address: str, request_timeout_s: float = 30.0) -> None:
        self.address = address
        self.request_timeout_s = request_timeout_s
        self.card: dict[str, Any] = {}
        self.tokenizer: Tokenizer | None = None
        self.channel = Channel(address, request_timeout_s)

    # ---- lifecycle -------------------------------------------------------------------
    async def connect(self, timeout_s: float = 30.0) -> None:
        """Connect, learn the model and its text rules, and watch the engine's process."""
        self.channel.open()
        hello = await asyncio.wait_for(self._call(wire.Hello(0)), timeout_s)
        self.card = hello["card"]
        self.tokenizer = Tokenizer(
            Normalizer.from_config(hello["normalizer"]), Vocabulary(hello["vocabulary"])
        )
        self.channel.watch(int(hello["pid"]))

    async def close(self) -> None:
        await self.channel.close()

    @property
    def dead_reason(self) -> str | None:
        return self.channel.dead_reason

    async def _call(self, message: Any) -> Any:
        return await self.channel.call(message)

    def _start_generation(self, message: wire.Generate, prompt: list[str]) -> Generation:
        rid, queue = self.channel.start_stream(message)
        return Generation(self, rid, queue, prompt)

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
        self,
        text: str = "",
        k: int = 5,
        owner: str | None = None,
        skip_special: bool = False,
        cache: bool | None = None,
    ) -> SessionStep:
        words, ids = self.encode(text)
        top_k = _top_k(k, skip_special)
        step = await self._call(wire.CreateSession(0, ids, top_k, owner, cache))
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

    async def attach_stream(
        self, session_id: str | None, owner: str | None, cache: bool | None = None
    ) -> SessionInfo:
        """Claim the session (a new one for ``None``, with a continuous cache if
        ``cache``) for one live stream."""
        return SessionInfo(*await self._call(wire.AttachStream(0, session_id, owner, cache)))

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
