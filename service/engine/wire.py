"""The messages between API processes and the engine process (msgspec msgpack structs).

Each ZeroMQ message carries a *list* of these, so that a busy process pays one system
call for many requests or results. Requests are a tagged union that the engine decodes
with validation; nothing is pickled. Word ids, not words, cross the channel: the API
processes normalise text and turn ids back into words, so the engine's event loop only
queues work.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Msg(msgspec.Struct, tag=True, array_like=True, omit_defaults=True):
    """Every message names the request it belongs to (``rid``, unique per API process)."""

    rid: int


# ---- API -> engine ----------------------------------------------------------------------
class Hello(_Msg):
    """First message of an API process: answered with the model card and vocabulary."""


class Health(_Msg):
    pass


class Predict(_Msg):
    ids: list[int]
    top_k: int


class Score(_Msg):
    """``top_k`` > 0: also the top k before each token (answered as ``[logprobs, tops]``)."""

    ids: list[int]
    top_k: int = 0


class Sampling(msgspec.Struct, array_like=True):
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int | None
    stop_at_eos: bool
    logprobs: int | None = None  # None: none; 0: each word's log-prob; k: also the top k


class Generate(_Msg):
    """Stateless from ``ids`` (``session_id`` None), else continue that session."""

    ids: list[int]
    sampling: Sampling
    session_id: str | None = None
    owner: str | None = None


class CreateSession(_Msg):
    ids: list[int]
    top_k: int
    owner: str | None = None
    cache: bool | None = None  # keep a continuous cache (None: the server's setting)


class Feed(_Msg):
    session_id: str
    ids: list[int]
    top_k: int
    owner: str | None = None


class ResetSession(_Msg):
    session_id: str
    owner: str | None = None


class DescribeSession(_Msg):
    session_id: str
    owner: str | None = None


class DeleteSession(_Msg):
    session_id: str
    owner: str | None = None


class ForkSession(_Msg):
    session_id: str
    top_k: int
    owner: str | None = None


class RewindSession(_Msg):
    session_id: str
    tokens: int
    top_k: int
    owner: str | None = None


class ExportState(_Msg):
    session_id: str
    owner: str | None = None


class ImportState(_Msg):
    """A new session from a signed state token (``service.engine.state_token``)."""

    state: str
    top_k: int
    owner: str | None = None


class AttachStream(_Msg):
    """Open a WebSocket stream on a session (a new one when ``session_id`` is None)."""

    session_id: str | None
    owner: str | None = None
    cache: bool | None = None  # a new session keeps a continuous cache (None: setting)


class DetachStream(_Msg):
    session_id: str


class FlushSessions(_Msg):
    """Store every session state the store lacks (drain)."""


class Cancel(_Msg):
    """Cancel the running request ``rid`` (a generation, or a queued item)."""


Request = (
    Hello
    | Health
    | Predict
    | Score
    | Generate
    | CreateSession
    | Feed
    | ResetSession
    | DescribeSession
    | DeleteSession
    | ForkSession
    | RewindSession
    | ExportState
    | ImportState
    | AttachStream
    | DetachStream
    | FlushSessions
    | Cancel
)


# ---- engine -> API ----------------------------------------------------------------------
class Result(_Msg):
    """The answer to ``rid``; ``value`` is plain msgpack (shapes in ``service.engine.client``)."""

    value: Any = None


class Failure(_Msg):
    """``rid`` failed with a typed error (``service.engine.errors`` code)."""

    code: str
    message: str
    details: Any = None


class Token(_Msg):
    """One generated word of generation ``rid``."""

    token_id: int
    index: int
    position: int | None = None  # the session's position after it (sessions only)
    logprob: float | None = None  # when the generation asked for log-probs
    top: list[Any] | None = None  # [[ids], [log-probs]], likeliest first


class Done(_Msg):
    """Generation ``rid`` ended; ``position`` is the session's after it (sessions only)."""

    reason: str
    position: int | None = None


Reply = Result | Failure | Token | Done

REQUESTS = msgspec.msgpack.Decoder(list[Request])
REPLIES = msgspec.msgpack.Decoder(list[Reply])
ENCODER = msgspec.msgpack.Encoder()
