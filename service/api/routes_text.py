"""Stateless routes: predict, score, generate (JSON or Server-Sent Events).

Each route is lean: admission (auth before the body), the body bytes validated by the
request's pydantic model, one engine call, orjson bytes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from service.api.convert import generation_request, json_response, predict_payload, score_payload
from service.api.deps import admit
from service.api.errors import error_body, request_body, responses
from service.api.schemas import (
    GenerateRequest,
    GenerateResponse,
    PredictRequest,
    PredictResponse,
    ScoreRequest,
    ScoreResponse,
)
from service.engine.client import Generation, errors

router = APIRouter(prefix="/v1", tags=["text"])
_COMMON = (
    errors.Unauthorized,
    errors.PayloadTooLarge,
    errors.Overloaded,
    errors.NotReady,
    errors.Timeout,
)


@router.post(
    "/predict",
    summary="Next-word predictions after a text",
    responses=responses(*_COMMON, ok=PredictResponse),
    openapi_extra=request_body(PredictRequest),
)
async def predict(request: Request) -> Response:
    engine, admission, _ = await admit(request)
    body = await admission.read(request, PredictRequest)
    k = admission.k(body.k)
    result = await engine.predict(admission.text(body.text), k, body.exclude_special)
    return json_response(predict_payload(engine.model_id, result))


@router.post(
    "/score",
    summary="Per-token log-probabilities and perplexity of a text",
    responses=responses(*_COMMON, ok=ScoreResponse),
    openapi_extra=request_body(ScoreRequest),
)
async def score(request: Request) -> Response:
    engine, admission, _ = await admit(request)
    body = await admission.read(request, ScoreRequest)
    result = await engine.score(admission.text(body.text))
    return json_response(score_payload(engine.model_id, result))


@router.post(
    "/generate",
    summary="Generate words after a prompt (JSON, or SSE with stream: true)",
    responses={
        **responses(*_COMMON, ok=GenerateResponse),
        200: {
            "model": GenerateResponse,
            "content": {"text/event-stream": {}},
            "description": "JSON, or Server-Sent Events when stream is true",
        },
    },
    openapi_extra=request_body(GenerateRequest),
)
async def generate(request: Request) -> Response:
    engine, admission, _ = await admit(request)
    body = await admission.read(request, GenerateRequest)
    params = generation_request(body, admission)
    stream = await engine.generate(admission.text(body.text), params)
    if body.stream:
        return StreamingResponse(
            _sse(stream, engine.model_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        words = await asyncio.wait_for(stream.collect(), admission.settings.request_timeout_s)
    except TimeoutError:
        raise errors.Timeout("generation did not finish within its deadline") from None
    assert stream.finish_reason is not None
    return json_response(
        {
            "model": engine.model_id,
            "prompt_tokens": stream.prompt_tokens,
            "tokens": [w.word for w in words],
            "text": stream.text,
            "finish_reason": stream.finish_reason.value,
        }
    )


async def _sse(stream: Generation, model_id: str) -> AsyncIterator[bytes]:
    """One event per word, then a final one; an error mid-stream becomes an error event."""
    try:
        async for word in stream:
            yield _event({"word": word.word, "index": word.index})
    except errors.ServeError as error:
        yield _event(error_body(error.code, error.message))
        return
    assert stream.finish_reason is not None
    yield _event(
        {
            "finish_reason": stream.finish_reason.value,
            "model": model_id,
            "prompt_tokens": stream.prompt_tokens,
            "tokens": stream.words,
            "text": stream.text,
        }
    )


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


__all__ = ["GenerateResponse", "router"]
