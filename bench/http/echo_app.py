"""A null server: the HTTP/WebSocket ceiling of this machine, to compare lstm-serve against.

``uvicorn bench.http.echo_app:app --host 127.0.0.1 --port 8001`` serves the routes the load
generator uses with fixed answers shaped like ``shared/API.md`` and no model at all. What
the generator reaches here is the most any FastAPI/uvicorn server could do on this box
with this client; lstm-serve's numbers should be read against it. ``POST /v1/predict`` is
the bare one (no body parsing); the session routes keep ids in a dict so that a feed to an
unknown session answers ``session_not_found`` like the real server.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

MODEL = "echo"
PREDICTIONS = [
    {"word": "the", "probability": 0.25, "logprob": -1.386},
    {"word": "a", "probability": 0.125, "logprob": -2.079},
]
PREDICT_BODY = json.dumps(
    {"model": MODEL, "tokens": ["the", "clouds"], "predictions": PREDICTIONS}
).encode()
SCORE_BODY = json.dumps(
    {
        "model": MODEL,
        "tokens": ["the", "clouds"],
        "token_logprobs": [-2.0, -6.0],
        "logprob": -8.0,
        "perplexity": 54.6,
    }
).encode()
STREAM_WORDS = ("the", "sky", "is", "blue", "today")
JSON = "application/json"

app = FastAPI(title="lstm-serve echo (null) server", docs_url=None, redoc_url=None)
# Sessions are ids only; bounded so a long run cannot grow it without limit.
MAX_SESSIONS = 100_000
_sessions: dict[str, int] = {}


def _error(code: str, status: int, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "details": None}}
    return Response(json.dumps(body), status_code=status, media_type=JSON)


@app.post("/v1/predict")
async def predict() -> Response:
    """Fixed answer without reading the body: the bare request/response cost."""
    return Response(PREDICT_BODY, media_type=JSON)


@app.post("/v1/score")
async def score() -> Response:
    return Response(SCORE_BODY, media_type=JSON)


@app.post("/v1/sessions", status_code=201)
async def create_session() -> Response:
    if len(_sessions) >= MAX_SESSIONS:
        return _error("overloaded", 429, "session capacity full")
    session_id = secrets.token_urlsafe(16)
    _sessions[session_id] = 0
    body = {"session_id": session_id, "position": 0, "tokens": [], "predictions": PREDICTIONS}
    return Response(json.dumps(body), status_code=201, media_type=JSON)


@app.post("/v1/sessions/{session_id}/feed")
async def feed(session_id: str, request: Request) -> Response:
    if session_id not in _sessions:
        return _error("session_not_found", 404, f"no session {session_id!r}")
    text = str((await request.json()).get("text", ""))
    _sessions[session_id] += len(text.split())
    body = {
        "session_id": session_id,
        "position": _sessions[session_id],
        "tokens": text.split(),
        "logprob": -5.0,
        "predictions": PREDICTIONS,
    }
    return Response(json.dumps(body), media_type=JSON)


@app.delete("/v1/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str) -> Response:
    if _sessions.pop(session_id, None) is None:
        return _error("session_not_found", 404, f"no session {session_id!r}")
    return Response(status_code=204)


@app.post("/v1/generate")
async def generate() -> StreamingResponse:
    """Always streams (the generator only uses ``stream: true``): five words, then finish."""

    async def events() -> AsyncIterator[str]:
        for index, word in enumerate(STREAM_WORDS):
            yield f"data: {json.dumps({'word': word, 'index': index})}\n\n"
            await asyncio.sleep(0)
        yield f"data: {json.dumps({'finish_reason': 'length'})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """``ready``, then a fixed ``predictions`` answer (echoing ``id``) per ``feed``."""
    await websocket.accept()
    session_id, position = secrets.token_urlsafe(16), 0
    await websocket.send_json(
        {"type": "ready", "session_id": session_id, "position": 0, "model": MODEL}
    )
    try:
        while True:
            try:
                message = json.loads(await websocket.receive_text())
                kind = message.get("type")
            except (ValueError, AttributeError):
                message, kind = {}, None
            if kind == "close":
                await websocket.close(1000)
                return
            if kind != "feed":
                await websocket.send_json(
                    {
                        "type": "error",
                        "code": "invalid_request",
                        "message": f"unsupported type {kind!r}",
                        "id": message.get("id"),
                    }
                )
                continue
            position += len(str(message.get("text", "")).split())
            await websocket.send_json(
                {
                    "type": "predictions",
                    "id": message.get("id"),
                    "position": position,
                    "tokens": [],
                    "logprob": -5.0,
                    "predictions": PREDICTIONS,
                }
            )
    except WebSocketDisconnect:
        return


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"status":"ready"}', media_type=JSON)
