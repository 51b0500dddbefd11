"""Typed answers of the server (fields as in docs/API.md), built from its JSON.

Each ``from_json`` reads the fields it knows and ignores others, so a newer server that
adds fields keeps working with this client. ``display_text`` properties join the model's
words for people to read (``britain 's`` -> ``britain's``); ``tokens`` stay the model's
own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.detokenize import detokenize


@dataclass(frozen=True)
class Prediction:
    """One candidate next word; ``probability`` is over the whole vocabulary."""

    word: str
    probability: float
    logprob: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prediction:
        return cls(str(data["word"]), float(data["probability"]), float(data["logprob"]))


def _predictions(data: dict[str, Any]) -> list[Prediction]:
    return [Prediction.from_json(item) for item in data.get("predictions", [])]


@dataclass(frozen=True)
class Predictions:
    """``POST /v1/predict``: the words fed (``tokens``) and the likeliest next words."""

    model: str
    tokens: list[str]
    predictions: list[Prediction]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Predictions:
        return cls(str(data["model"]), list(data["tokens"]), _predictions(data))


@dataclass(frozen=True)
class Score:
    """``POST /v1/score``; ``perplexity`` is None for an empty text."""

    model: str
    tokens: list[str]
    token_logprobs: list[float]
    logprob: float
    perplexity: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Score:
        return cls(
            str(data["model"]),
            list(data["tokens"]),
            [float(x) for x in data["token_logprobs"]],
            float(data["logprob"]),
            None if data.get("perplexity") is None else float(data["perplexity"]),
        )


@dataclass(frozen=True)
class Generation:
    """``POST /v1/generate`` (also the last event of a streamed generation)."""

    model: str
    prompt_tokens: list[str]
    tokens: list[str]
    text: str
    finish_reason: str  # "length" | "eos"

    @property
    def display_text(self) -> str:
        """The generated words for reading (``do n't`` -> ``don't``, ``<eos>`` -> newline)."""
        return detokenize(self.tokens)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generation:
        return cls(
            str(data.get("model", "")),
            list(data.get("prompt_tokens", [])),
            list(data.get("tokens", [])),
            str(data.get("text", "")),
            str(data["finish_reason"]),
        )


@dataclass(frozen=True)
class GeneratedWord:
    """One Server-Sent Event of a streamed generation: the ``index``-th new word."""

    word: str
    index: int


@dataclass(frozen=True)
class SessionStep:
    """A session's answer to its creation or a feed: its ``position`` (tokens consumed)
    after the fed ``tokens``, their summed ``logprob`` (None on creation) and the
    predictions for the next word."""

    session_id: str
    position: int
    tokens: list[str]
    predictions: list[Prediction]
    logprob: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], session_id: str = "") -> SessionStep:
        return cls(
            str(data.get("session_id", session_id)),
            int(data["position"]),
            list(data["tokens"]),
            _predictions(data),
            None if data.get("logprob") is None else float(data["logprob"]),
        )


@dataclass(frozen=True)
class SessionInfo:
    """``GET /v1/sessions/{id}`` (and the answer to a reset); times are RFC 3339 UTC."""

    session_id: str
    position: int
    created_at: str
    last_used_at: str
    expires_at: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            str(data["session_id"]),
            int(data["position"]),
            str(data.get("created_at", "")),
            str(data.get("last_used_at", "")),
            str(data.get("expires_at", "")),
        )


@dataclass(frozen=True)
class StreamToken:
    """A generated word on the WebSocket; ``position`` is the session's after it."""

    word: str
    position: int


@dataclass(frozen=True)
class StreamDone:
    """The end of a generation on the WebSocket (``finish_reason``: length, eos or
    cancelled); ``tokens`` are the words this client received."""

    finish_reason: str
    text: str
    position: int
    tokens: list[str]

    @property
    def display_text(self) -> str:
        return detokenize(self.tokens)
