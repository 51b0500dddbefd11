"""Stateless routes: predict, score, generate (JSON or Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from service import errors
from service.api.auth import require_key
from service.api.convert import check_k, generation_request, json_response
from service.api.deps import ready_engine, settings_of
from service.api.errors import error_body, responses
from service.api.schemas import (
    GenerateRequest,
    GenerateResponse,
    PredictRequest,
    PredictResponse,
    ScoreRequest,
    ScoreResponse,
)
from service.api.shortcuts import predict_payload
from service.engine import Engine
from service.generation import GenerationStream
from service.settings import Settings

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["text"])
EngineDep = Annotated[Engine, Depends(ready_engine)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
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
    response_model=PredictResponse,
    responses=responses(*_COMMON),
)
async def predict(body: PredictRequest, engine: EngineDep, settings: SettingsDep) -> Response:
    """Valid requests are usually answered by ``service.api.shortcuts`` before this."""
    return json_response(await predict_payload(engine, body, check_k(body.k, settings)))


@router.post(
    "/score",
    summary="Per-token log-probabilities and perplexity of a text",
    response_model=ScoreResponse,
    responses=responses(*_COMMON),
)
async def score(body: ScoreRequest, engine: EngineDep) -> Response:
    result = await engine.score(body.text)
    return json_response(
        {
            "model": engine.model_id,
            "tokens": result.tokens,
            "token_logprobs": result.token_logprobs,
            "logprob": result.logprob,
            "perplexity": result.perplexity,
        }
    )


@router.post(
    "/generate",
    summary="Generate words after a prompt (JSON, or SSE with stream: true)",
    responses={
        **responses(*_COMMON),
        200: {
            "content": {"text/event-stream": {}},
            "description": "JSON, or Server-Sent Events when stream is true",
        },
    },
)
async def generate(body: GenerateRequest, engine: EngineDep, settings: SettingsDep) -> Any:
    stream = await engine.generate(body.text, generation_request(body, settings))
    if body.stream:
        return StreamingResponse(
            _sse(stream, engine.model_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        words = await asyncio.wait_for(stream.collect(), settings.request_timeout_s)
    except TimeoutError:
        raise errors.Timeout("generation did not finish within its deadline") from None
    return GenerateResponse(
        model=engine.model_id,
        prompt_tokens=stream.prompt_tokens,
        tokens=[w.word for w in words],
        text=stream.text,
        finish_reason=stream.finish_reason.value,
    )  # type: ignore[union-attr,arg-type]


async def _sse(stream: GenerationStream, model_id: str) -> AsyncIterator[str]:
    """One event per word, then a final one; an error mid-stream becomes an error event."""
    try:
        async for word in stream:
            yield _event({"word": word.word, "index": word.index})
    except errors.ServeError as error:
        yield _event(error_body(error.code, error.message))
        return
    yield _event(
        {
            "finish_reason": stream.finish_reason.value,  # type: ignore[union-attr]
            "model": model_id,
            "prompt_tokens": stream.prompt_tokens,
            "tokens": stream.words,
            "text": stream.text,
        }
    )


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
