"""Engine results -> wire schemas, and wire requests -> engine parameters, in one place."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import Response

from service.api.schemas import PredictionItem, SamplingFields, SessionInfoResponse
from service.engine import GenerationRequest
from service.errors import InvalidRequest
from service.results import SessionInfo, WordProbability
from service.sampling import SamplingParams
from service.settings import Settings


def prediction_items(predictions: list[WordProbability]) -> list[PredictionItem]:
    return [
        PredictionItem(word=p.word, probability=p.probability, logprob=p.logprob)
        for p in predictions
    ]


def prediction_dicts(predictions: list[WordProbability]) -> list[dict[str, Any]]:
    """The same items as plain dicts, for answers serialised without pydantic."""
    return [
        {"word": p.word, "probability": p.probability, "logprob": p.logprob} for p in predictions
    ]


def json_response(payload: dict[str, Any]) -> Response:
    """A 200 JSON answer serialised by orjson, skipping FastAPI's response-model pass.

    The hot routes (predict, score, feed) build their payload from engine results whose
    types are already right; the route still declares ``response_model`` for OpenAPI,
    and the contract tests validate these answers against it.
    """
    return Response(orjson.dumps(payload), media_type="application/json")


def check_k(k: int, settings: Settings) -> int:
    if k > settings.max_k:
        raise InvalidRequest(f"k: at most {settings.max_k}", {"max_k": settings.max_k})
    return k


def generation_request(fields: SamplingFields, settings: Settings) -> GenerationRequest:
    if fields.max_tokens > settings.max_tokens:
        raise InvalidRequest(
            f"max_tokens: at most {settings.max_tokens}", {"max_tokens": settings.max_tokens}
        )
    return GenerationRequest(
        max_tokens=fields.max_tokens,
        sampling=SamplingParams(float(fields.temperature), fields.top_k, float(fields.top_p)),
        seed=fields.seed,
        stop_at_eos=fields.stop_at_eos,
    )


def rfc3339(unix_s: float) -> str:
    moment = dt.datetime.fromtimestamp(unix_s, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_info(info: SessionInfo) -> SessionInfoResponse:
    return SessionInfoResponse(
        session_id=info.session_id,
        position=info.position,
        created_at=rfc3339(info.created_at),
        last_used_at=rfc3339(info.last_used_at),
        expires_at=rfc3339(info.expires_at),
    )
