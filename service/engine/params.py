"""Request parameters shared by the engine and its client (no torch here, so that API
processes can import them cheaply)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Below this temperature sampling is greedy: dividing log-probs by a tinier number only
# overflows, and the softmax is already a one-hot at 1e-3 for any real model.
GREEDY_BELOW_TEMPERATURE = 1e-3


@dataclass(frozen=True)
class SamplingParams:
    """How to choose each word. ``temperature`` below ``GREEDY_BELOW_TEMPERATURE`` is
    greedy; ``top_k`` 0 and ``top_p`` 1 switch those filters off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW_TEMPERATURE


@dataclass(frozen=True)
class GenerationRequest:
    """``logprobs``: None reports nothing (the hot path stays as cheap as before); 0 the
    log-prob of each generated word; k also the k likeliest alternatives at its position
    (OpenAI's ``logprobs``, which distinguishes 0 from absent)."""

    max_tokens: int = 20
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    stop_at_eos: bool = True
    logprobs: int | None = None


class FinishReason(enum.Enum):
    LENGTH = "length"
    EOS = "eos"
    CANCELLED = "cancelled"
    ERROR = "error"
