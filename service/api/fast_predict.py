"""``POST /v1/predict`` without FastAPI's per-request machinery, for valid requests.

Profiling at 64 connections put most of the event loop's time per predict in routing,
dependency solving, body handling and response building, not in our code. This
shortcut answers a valid, authorised request to a ready server directly; anything else
(bad JSON, a failed validation, a missing key, ``k`` over the limit, not ready) goes on
to the FastAPI route with the body replayed, so every error keeps exactly the shape the
route gives it. Both paths build the answer with :func:`predict_payload`.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import authenticate
from service.api.convert import prediction_dicts
from service.api.errors import error_response
from service.api.schemas import PredictRequest
from service.engine import Engine
from service.errors import ServeError, Unauthorized

PATH = "/v1/predict"


class _Route:
    """What the metrics middleware reads from ``scope["route"]``."""

    path = PATH


async def predict_payload(engine: Engine, request: PredictRequest, k: int) -> dict[str, Any]:
    result = await engine.predict(request.text, k, request.exclude_special)
    return {
        "model": engine.model_id,
        "tokens": result.tokens,
        "predictions": prediction_dicts(result.predictions),
    }


async def fast_predict(scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    """Answer ``POST /v1/predict`` here when the request is valid, else through ``app``."""
    body = await _read_body(receive)
    request = _accepted(scope, body)
    if request is None:
        await app(scope, _replay(body, receive), send)
        return
    state = scope["app"].state
    scope["route"] = _Route
    try:
        payload = await predict_payload(state.engine, request, request.k)
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


def _accepted(scope: Scope, body: bytes) -> PredictRequest | None:
    """The request, if the shortcut may answer it (else None: the route decides)."""
    state = scope["app"].state
    settings = state.settings
    if state.drain.draining or not state.engine.ready:
        return None
    if settings.api_key_set:
        try:
            authenticate(HTTPConnection(scope))
        except Unauthorized:
            return None
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError:
        return None
    return request if request.k <= settings.max_k else None


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
