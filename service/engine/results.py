"""Results as plain dataclasses, no pydantic, no HTTP.

The engine answers in word ids (``Step``, ``SessionInfo``, top lists of ``(id, logprob)``);
the client in the API process turns them into words (``Prediction``, ``Score``,
``SessionStep``, ``GeneratedWord``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.vocabulary import EOS


@dataclass(frozen=True)
class WordProbability:
    word: str
    logprob: float

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class Prediction:
    tokens: list[str]
    predictions: list[WordProbability]


@dataclass(frozen=True)
class Score:
    tokens: list[str]
    token_logprobs: list[float]

    @property
    def logprob(self) -> float:
        return math.fsum(self.token_logprobs)

    @property
    def perplexity(self) -> float | None:
        """exp(-mean log-prob); None for an empty text."""
        if not self.token_logprobs:
            return None
        return math.exp(-self.logprob / len(self.token_logprobs))


@dataclass(frozen=True)
class SessionStep:
    """A session after create / feed: where it stands and what comes next."""

    session_id: str
    position: int
    tokens: list[str]
    logprob: float
    predictions: list[WordProbability]


@dataclass(frozen=True)
class Step:
    """The engine's answer to a session create / feed: ids, not words."""

    session_id: str
    position: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    position: int
    created_at: float  # unix seconds
    last_used_at: float
    expires_at: float


@dataclass(frozen=True)
class GeneratedWord:
    word: str
    index: int  # 0-based among generated words
    position: int | None  # the session's position after it (sessions only)


def join_words(words: list[str]) -> str:
    """Words joined by spaces, ``<eos>`` written as a line break."""
    out: list[str] = []
    for word in words:
        if word == EOS:
            out.append("\n")
        else:
            if out and out[-1] != "\n":
                out.append(" ")
            out.append(word)
    return "".join(out)
