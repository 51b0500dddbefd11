"""Engine results -> answer payloads, and request bodies -> engine parameters, in one place.

The hot routes answer with orjson bytes built from plain dicts (no response-model pass);
each route still declares its pydantic response model for /openapi.json, and the
contract tests validate the answers against it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import Response

from service.api.admission import Admission
from service.api.schemas import SamplingFields
from service.engine.client import (
    GenerationRequest,
    Prediction,
    Score,
    SessionInfo,
    SessionStep,
    WordProbability,
)


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


def prediction_dicts(predictions: list[WordProbability]) -> list[dict[str, Any]]:
    return [
        {"word": p.word, "probability": p.probability, "logprob": p.logprob} for p in predictions
    ]


def predict_payload(model_id: str, result: Prediction) -> dict[str, Any]:
    return {
        "model": model_id,
        "tokens": result.tokens,
        "predictions": prediction_dicts(result.predictions),
    }


def score_payload(model_id: str, result: Score) -> dict[str, Any]:
    return {
        "model": model_id,
        "tokens": result.tokens,
        "token_logprobs": result.token_logprobs,
        "logprob": result.logprob,
        "perplexity": result.perplexity,
    }


def step_payload(step: SessionStep, with_logprob: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "session_id": step.session_id,
        "position": step.position,
        "tokens": step.tokens,
        "predictions": prediction_dicts(step.predictions),
    }
    if with_logprob:
        payload["logprob"] = step.logprob
    return payload


def generation_request(fields: SamplingFields, admission: Admission) -> GenerationRequest:
    return admission.generation(
        fields.max_tokens,
        fields.temperature,
        fields.top_k,
        fields.top_p,
        fields.seed,
        fields.stop_at_eos,
    )


def rfc3339(unix_s: float) -> str:
    moment = dt.datetime.fromtimestamp(unix_s, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def info_payload(info: SessionInfo) -> dict[str, Any]:
    return {
        "session_id": info.session_id,
        "position": info.position,
        "created_at": rfc3339(info.created_at),
        "last_used_at": rfc3339(info.last_used_at),
        "expires_at": rfc3339(info.expires_at),
    }
