"""``POST /v1/completions``: OpenAI's legacy completions API over the engine's generate,
so that tools built on the ``openai`` client (and vLLM- or llama.cpp-style scripts) work.

Same admission as every /v1 route (auth with the same bearer keys first, then drain,
readiness, load, body limits), but errors on this route come in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) and a bad request is 400, as OpenAI
answers it; the status of every other error is the one table's (``errors.status_of``).
Each choice is one engine generation (n per prompt, all at once); an echo with log-probs
costs one score call per prompt. Usage is counted in the model's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.admission import Admission
from service.api.completions import Choice
from service.api.convert import json_response
from service.api.deps import admit
from service.api.errors import request_body, status_of
from service.api.schemas_openai import CompletionRequest, CompletionResponse, OpenAIErrorResponse
from service.engine.client import (
    EngineClient,
    FinishReason,
    GeneratedWord,
    GenerationRequest,
    errors,
)

router = APIRouter(prefix="/v1", tags=["openai"])
MAX_CHOICES = 64  # prompts x n in one request
MAX_SEED = 2**63
_TYPES = {"overloaded": "rate_limit_error"}


@dataclass(frozen=True)
class Plan:
    """A request turned into engine parameters once."""

    prompts: list[str]
    n: int
    echo: bool
    stops: list[str]
    logprobs: int | None
    generation: GenerationRequest
    include_usage: bool

    def request_for(self, index: int) -> GenerationRequest:
        """Choice ``index``'s parameters: a given seed moves on by one per choice, so the
        n choices differ and the same request gives the same choices."""
        seed = self.generation.seed
        if seed is None:
            return self.generation
        return dataclasses.replace(self.generation, seed=(seed + index) % MAX_SEED)


@router.post(
    "/completions",
    summary="OpenAI-compatible text completions (JSON, or SSE with stream: true)",
    responses={
        200: {
            "model": CompletionResponse,
            "content": {"text/event-stream": {}},
            "description": "JSON, or Server-Sent Events ending with data: [DONE]",
        },
        **{
            status: {"model": OpenAIErrorResponse, "description": "OpenAI's error shape"}
            for status in (400, 401, 413, 429, 503, 504)
        },
    },
    openapi_extra=request_body(CompletionRequest),
)
async def completions(request: Request) -> Response:
    try:
        engine, admission, _ = await admit(request)
        body = await admission.read(request, CompletionRequest)
        plan = _plan(body, admission)
        meta = _meta(engine)
        if body.stream:
            return StreamingResponse(
                _stream(engine, plan, meta),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        timeout_s = admission.settings.request_timeout_s
        try:
            answer = await asyncio.wait_for(_complete(engine, plan, meta), timeout_s)
        except TimeoutError:
            raise errors.Timeout("completion did not finish within its deadline") from None
        return json_response(answer)
    except errors.ServeError as error:
        request.state.error_code = error.code
        return openai_error(error, request)


def _plan(body: CompletionRequest, admission: Admission) -> Plan:
    prompts = [admission.text(prompt) for prompt in body.prompts]
    n = body.n or 1
    if len(prompts) * n > MAX_CHOICES:
        raise errors.InvalidRequest(f"n: at most {MAX_CHOICES} choices (prompts x n)")
    temperature = body.temperature if body.temperature is not None else 1.0
    if body.top_p == 0:
        temperature = 0.0  # all of the mass in the likeliest word
    generation = admission.generation(
        body.max_tokens if body.max_tokens is not None else 16,
        temperature,
        max(0, body.top_k or 0),
        body.top_p or 1.0,
        None if body.seed is None else body.seed % MAX_SEED,
        not body.ignore_eos,
    )
    return Plan(
        prompts,
        n,
        bool(body.echo),
        body.stops,
        body.logprobs,
        dataclasses.replace(generation, logprobs=body.logprobs),
        bool((body.stream_options or {}).get("include_usage")),
    )


def _meta(engine: EngineClient) -> dict[str, Any]:
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": engine.model_id,
    }


async def _prepared(engine: EngineClient, plan: Plan) -> tuple[list[Choice], int]:
    """The choices, echo already in place, and the prompts' word count."""
    choices: list[Choice] = []
    prompt_tokens = 0
    for p, prompt in enumerate(plan.prompts):
        words, _ = engine.encode(prompt)
        prompt_tokens += len(words)
        score = None
        if plan.echo and plan.logprobs is not None:
            score = await engine.score(prompt, top_k=plan.logprobs)
        for j in range(plan.n):
            choice = Choice(
                p * plan.n + j,
                plan.stops,
                plan.logprobs is not None,
                skip_eos=plan.generation.stop_at_eos,
            )
            if plan.echo:
                choice.echo(words, score)
            choices.append(choice)
    return choices, prompt_tokens


async def _progress(
    engine: EngineClient, plan: Plan, choice: Choice, prompt: str
) -> AsyncIterator[Choice]:
    """Run ``choice``'s generation, yielding after each word and once finished (leaving
    early, at a stop string or a gone client, cancels the generation in the engine)."""
    generation = await engine.generate(prompt, plan.request_for(choice.index))
    words = cast(AsyncGenerator[GeneratedWord, None], generation.__aiter__())  # an async def
    async with contextlib.aclosing(words):
        async for word in words:
            choice.add(word)
            if choice.finish_reason is not None:
                break
            yield choice
    choice.finish(generation.finish_reason or FinishReason.EOS)
    yield choice


async def _complete(engine: EngineClient, plan: Plan, meta: dict[str, Any]) -> dict[str, Any]:
    choices, prompt_tokens = await _prepared(engine, plan)

    async def run(choice: Choice) -> None:
        async for _ in _progress(engine, plan, choice, plan.prompts[choice.index // plan.n]):
            pass

    tasks = [asyncio.create_task(run(choice)) for choice in choices]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return {
        **meta,
        "choices": [c.payload() for c in choices],
        "usage": _usage(choices, prompt_tokens),
    }


async def _stream(engine: EngineClient, plan: Plan, meta: dict[str, Any]) -> AsyncIterator[bytes]:
    """Chunks of OpenAI's shape as words arrive (choices interleaved), then ``[DONE]``;
    an error mid-stream is one ``{"error": ...}`` event before ``[DONE]``."""
    queue: asyncio.Queue[Choice | errors.ServeError] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    try:
        choices, prompt_tokens = await _prepared(engine, plan)

        async def pump(choice: Choice) -> None:
            try:
                async for update in _progress(
                    engine, plan, choice, plan.prompts[choice.index // plan.n]
                ):
                    queue.put_nowait(update)
            except errors.ServeError as error:
                queue.put_nowait(error)

        tasks = [asyncio.create_task(pump(choice)) for choice in choices]
        running = len(choices)
        while running:
            update = await queue.get()
            if isinstance(update, errors.ServeError):
                raise update
            text, words = update.release()
            done = update.finish_reason is not None and not update.released_finish
            if done:
                update.released_finish = True
                running -= 1
            if text or words or done:
                choice = {
                    "index": update.index,
                    "text": text,
                    "logprobs": update.logprobs(words),
                    "finish_reason": update.finish_reason if done else None,
                }
                yield _event({**meta, "choices": [choice]})
        if plan.include_usage:
            yield _event({**meta, "choices": [], "usage": _usage(choices, prompt_tokens)})
    except errors.ServeError as error:
        yield _event(_error_body(error))
    finally:
        for task in tasks:
            task.cancel()
    yield b"data: [DONE]\n\n"


def _usage(choices: list[Choice], prompt_tokens: int) -> dict[str, int]:
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


# ---- errors in OpenAI's shape -------------------------------------------------------------
def _status(error: errors.ServeError) -> int:
    return 400 if isinstance(error, errors.InvalidRequest) else status_of(error)


def _error_body(error: errors.ServeError) -> dict[str, Any]:
    status = _status(error)
    known = status != 500
    code = error.code if known else "internal"
    if isinstance(error, errors.Unauthorized):
        code = "invalid_api_key"  # what OpenAI's own API says
    kind = _TYPES.get(code, "server_error" if status >= 500 else "invalid_request_error")
    message = error.message if known else "internal error"
    return {"error": {"message": message, "type": kind, "param": _param(error), "code": code}}


def _param(error: errors.ServeError) -> str | None:
    """The field a validation error is about (pydantic's location), as OpenAI's ``param``."""
    details = error.details if isinstance(error, errors.InvalidRequest) else None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        loc = details[0].get("loc") or []
        return str(loc[0]) if loc else None
    return None


def openai_error(error: errors.ServeError, request: Request | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, errors.Overloaded):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if request is not None and getattr(request.state, "close_connection", False):
        headers["Connection"] = "close"
    return JSONResponse(_error_body(error), _status(error), headers=headers)
