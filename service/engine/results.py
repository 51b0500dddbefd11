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
    """``top``: when asked for, the likeliest words before each token (its predictors)."""

    tokens: list[str]
    token_logprobs: list[float]
    top: list[list[WordProbability]] | None = None

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
    """``logprob`` and ``top`` (likeliest first) only when the request asked for them."""

    word: str
    index: int  # 0-based among generated words
    position: int | None  # the session's position after it (sessions only)
    logprob: float | None = None
    top: list[WordProbability] | None = None


def join_words(words: list[str]) -> str:
    """Words joined by spaces, ``<eos>`` written as a line break."""
    return "".join(word_pieces(words))


def word_pieces(words: list[str], after: str = "") -> list[str]:
    """Each word as it appears in ``join_words``'s text, with the space before it; the
    pieces concatenate to that text (OpenAI's ``text_offset`` counts through them).
    ``after``: the text that precedes (a streamed continuation spaces itself from it)."""
    out: list[str] = []
    previous = after[-1:] if after else ""
    for word in words:
        if word == EOS:
            piece = "\n"
        elif previous in ("", "\n"):
            piece = word
        else:
            piece = " " + word
        out.append(piece)
        previous = piece[-1]
    return out
