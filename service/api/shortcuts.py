"""The hottest routes without FastAPI's per-request machinery, for valid requests.

Profiling at 64 connections put most of the event loop's time per predict in routing,
dependency solving, body handling and response building, not in our code. A shortcut
answers a valid, authorised request to a ready server directly: ``POST /v1/predict`` and
``POST /v1/sessions/{session_id}/feed``. Anything else (bad JSON, a failed validation, a
missing key, ``k`` over the limit, not ready) goes on to the FastAPI route with the body
replayed, so every error keeps exactly the shape the route gives it; errors the engine
raises get the same handler's answer. Routes and shortcuts build answers with the same
``*_payload`` functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import authenticate
from service.api.convert import prediction_dicts
from service.api.errors import error_response
from service.api.schemas import FeedRequest, PredictRequest
from service.engine import Engine
from service.errors import ServeError, Unauthorized


async def predict_payload(engine: Engine, request: PredictRequest, k: int) -> dict[str, Any]:
    result = await engine.predict(request.text, k, request.exclude_special)
    return {
        "model": engine.model_id,
        "tokens": result.tokens,
        "predictions": prediction_dicts(result.predictions),
    }


async def feed_payload(
    engine: Engine, session_id: str, request: FeedRequest, k: int, owner: str | None
) -> dict[str, Any]:
    step = await engine.feed(session_id, request.text, k, owner, request.exclude_special)
    return {
        "session_id": step.session_id,
        "position": step.position,
        "tokens": step.tokens,
        "logprob": step.logprob,
        "predictions": prediction_dicts(step.predictions),
    }


Answer = Callable[[Engine, Any, str | None, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Shortcut:
    path: str  # the route template, also what the metrics middleware reads
    model: type[BaseModel]
    answer: Answer  # (engine, request, owner, session id or "") -> payload


PREDICT = Shortcut(
    "/v1/predict",
    PredictRequest,
    lambda engine, request, owner, _: predict_payload(engine, request, request.k),
)
FEED = Shortcut(
    "/v1/sessions/{session_id}/feed",
    FeedRequest,
    lambda engine, request, owner, sid: feed_payload(engine, sid, request, request.k, owner),
)


def match(scope: Scope) -> tuple[Shortcut, str] | None:
    """The shortcut for this request and its session id ("" for none), if any."""
    if scope["method"] != "POST":
        return None
    path = scope["path"]
    if path == PREDICT.path:
        return PREDICT, ""
    action = session_action(path)
    if action is not None and action[1] == "feed":
        return FEED, action[0]
    return None


def session_action(path: str) -> tuple[str, str] | None:
    """``/v1/sessions/ID/ACTION`` -> (ID, ACTION), for a non-empty ID; else None."""
    parts = path.split("/")  # ["", "v1", "sessions", ID, ACTION]
    if len(parts) == 5 and parts[:3] == ["", "v1", "sessions"] and parts[3]:
        return parts[3], parts[4]
    return None


async def answer(
    shortcut: Shortcut, session_id: str, scope: Scope, receive: Receive, send: Send, app: ASGIApp
) -> None:
    """Answer here when the request is valid, else through ``app`` (the FastAPI app)."""
    body = await _read_body(receive)
    accepted = _accepted(shortcut, scope, body)
    if accepted is None:
        await app(scope, _replay(body, receive), send)
        return
    request, owner = accepted
    scope["route"] = shortcut
    try:
        payload = await shortcut.answer(scope["app"].state.engine, request, owner, session_id)
    except ServeError as error:
        scope.setdefault("state", {})["error_code"] = error.code
        await error_response(error)(scope, receive, send)
        return
    content = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _accepted(shortcut: Shortcut, scope: Scope, body: bytes) -> tuple[Any, str | None] | None:
    """(request, owner) if the shortcut may answer (else None: the route decides)."""
    state = scope["app"].state
    settings = state.settings
    if state.drain.draining or not state.engine.ready:
        return None
    owner = None
    if settings.api_key_set:
        try:
            owner = authenticate(HTTPConnection(scope))
        except Unauthorized:
            return None
    try:
        request = shortcut.model.model_validate_json(body)
    except ValidationError:
        return None
    return (request, owner) if request.k <= settings.max_k else None  # type: ignore[attr-defined]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first gives back the body already read."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
