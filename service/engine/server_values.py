"""Engine results as the values of ``wire.Result`` replies, and wire sampling settings
as a ``GenerationRequest``: the engine server's side of the message schema."""

from __future__ import annotations

from typing import Any

from service.engine import wire
from service.engine.errors import ServeError
from service.engine.params import GenerationRequest, SamplingParams
from service.engine.results import SessionInfo, Step


def top(pairs: list[tuple[int, float]]) -> list[Any]:
    """(id, log-prob) pairs as two columns: ids, then log-probs."""
    return [[token_id for token_id, _ in pairs], [logprob for _, logprob in pairs]]


def step(step_: Step) -> list[Any]:
    return [step_.session_id, step_.position, step_.logprob, *top(step_.top)]


def info(info_: SessionInfo) -> list[Any]:
    return [
        info_.session_id,
        info_.position,
        info_.created_at,
        info_.last_used_at,
        info_.expires_at,
    ]


def generation_request(sampling: wire.Sampling) -> GenerationRequest:
    return GenerationRequest(
        max_tokens=sampling.max_tokens,
        sampling=SamplingParams(sampling.temperature, sampling.top_k, sampling.top_p),
        seed=sampling.seed,
        stop_at_eos=sampling.stop_at_eos,
        logprobs=sampling.logprobs,
    )


def failure(rid: int, error: ServeError) -> wire.Failure:
    """A typed engine error as the reply to request ``rid``."""
    return wire.Failure(rid, error.code, error.message, error.details)
