"""``WS /v1/stream``: per-session stateful streaming (the protocol of docs/API.md).

The session lives in the engine, which lets one stream at a time attach to it, so a
stream may land on any API process. The receive loop answers feeds, resets and closes
itself, one after another, so answers keep the messages' order without a task hand-off
per message. A ``generate`` runs in a task instead, so that the loop can still read a
``cancel``; messages that arrive during it wait in a bounded queue that the task drains
in order before it ends (a client that floods stops being read).

Frames: text frames carry JSON messages; a binary frame is answered with an
``invalid_request`` error and the stream stays open. The size limit counts UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import TypeAdapter, ValidationError

from service.api.admission import Admission, invalid
from service.api.convert import generation_request, prediction_dicts
from service.api.errors import ws_error
from service.api.metrics import ApiMetrics
from service.api.schemas import (
    WsCancel,
    WsClose,
    WsFeed,
    WsFork,
    WsGenerate,
    WsMessage,
    WsReset,
    WsRewind,
)
from service.api.stream_open import open_stream
from service.engine.client import (
    EngineClient,
    Generation,
    InvalidRequest,
    PayloadTooLarge,
    ServeError,
)

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
_messages: TypeAdapter[Any] = TypeAdapter(WsMessage)
_PENDING_MESSAGES = 64


async def stream_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    await websocket.accept()
    try:
        session_id, position = await open_stream(websocket, app.state.admission, app.state.engine)
    except ServeError as error:
        app.state.metrics.errors.labels(error.code).inc()
        with contextlib.suppress(Exception):
            await websocket.send_text(orjson.dumps(ws_error(error)).decode())
            await websocket.close(POLICY_VIOLATION, error.code)
        return
    connection = StreamConnection(websocket, app.state, session_id, position)
    app.state.drain.streams.add(websocket)
    try:
        # Its own task: every wake-up of the message loop (two per feed) then resumes a
        # few frames, not the ~20 ASGI middleware frames this endpoint runs under.
        await asyncio.create_task(connection.serve(), name=f"stream-{session_id[:8]}")
    finally:
        app.state.drain.streams.discard(websocket)
        await app.state.engine.detach_stream(session_id)


class StreamConnection:
    """One attached stream: the receive loop plus the ordered message task."""

    def __init__(self, websocket: WebSocket, state: Any, session_id: str, position: int) -> None:
        self.ws = websocket
        self.engine: EngineClient = state.engine
        self.admission: Admission = state.admission
        self.metrics: ApiMetrics = state.metrics
        self.session_id = session_id
        self.owner: str | None = websocket.state.owner
        self.position = position
        self.max_bytes = state.settings.max_ws_message_bytes
        self.pending: asyncio.Queue[Any] = asyncio.Queue(_PENDING_MESSAGES)
        self.generation: Generation | None = None
        self.worker: asyncio.Task[None] | None = None  # while a generate runs
        self.closed = False

    async def serve(self) -> None:
        await self._send_ready(None)
        try:
            await self._receive_loop()  # returns after a close message
            if self.worker is not None:
                await asyncio.wait_for(self.worker, self.admission.settings.request_timeout_s)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("stream %s failed", self.session_id[:8])
            with contextlib.suppress(Exception):
                await self.ws.close(1011)
        finally:
            self.closed = True
            if self.generation is not None:
                self.generation.cancel()
            if self.worker is not None:
                self.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.worker

    async def _receive_loop(self) -> None:
        while not self.closed:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            message = self._parse(frame)
            if isinstance(message, WsCancel):
                if self.generation is not None:
                    self.generation.cancel()
                continue
            if self.worker is not None and not self.worker.done():
                await self.pending.put(message)  # after the running generation, in order
            elif isinstance(message, WsGenerate):
                self.worker = asyncio.create_task(self._process(message))
            else:
                await self._answer(message)
            if isinstance(message, WsClose):
                return

    def _parse(self, frame: Mapping[str, Any]) -> Any:
        message_id = None
        try:
            raw = frame.get("text")
            if raw is None:
                raise InvalidRequest("binary frames are not read: send JSON as a text frame")
            if len(raw) * 4 > self.max_bytes and len(raw.encode()) > self.max_bytes:
                raise PayloadTooLarge(f"message over {self.max_bytes} bytes")
            data = orjson.loads(raw)
            if isinstance(data, dict):
                message_id = data.get("id")
            return _messages.validate_python(data)
        except orjson.JSONDecodeError as error:
            failure: ServeError = InvalidRequest(f"not JSON: {error.msg}")
        except ValidationError as error:
            failure = invalid(error)
            failure.message = failure.message.replace("body: ", "message: ")
        except ServeError as error:
            failure = error
        self.metrics.errors.labels(failure.code).inc()
        return _Reply(ws_error(failure, message_id if _is_scalar(message_id) else None))

    async def _process(self, message: Any) -> None:
        """Answer ``message`` (a generate), then whatever queued behind it, in order."""
        while True:
            await self._answer(message)
            if isinstance(message, WsClose) or self.pending.empty():
                return
            message = self.pending.get_nowait()

    async def _answer(self, message: Any) -> None:
        if isinstance(message, _Reply):
            await self._send(message.payload)
            return
        try:
            await self._handle(message)
        except ServeError as error:
            self.metrics.errors.labels(error.code).inc()
            await self._send(ws_error(error, message.id))

    async def _handle(self, message: Any) -> None:
        if isinstance(message, WsFeed):
            await self._feed(message)
        elif isinstance(message, WsGenerate):
            await self._generate(message)
        elif isinstance(message, WsReset):
            info = await self.engine.reset_session(self.session_id, self.owner)
            self.position = info.position
            await self._send_ready(message.id)
        elif isinstance(message, WsFork):
            fork = await self.engine.fork_session(self.session_id, 0, self.owner)  # no model step
            answer = {"type": "forked", "session_id": fork.session_id, "position": fork.position}
            await self._send(answer, message.id)
        elif isinstance(message, WsRewind):
            await self._rewind(message)
        elif isinstance(message, WsClose):
            self.closed = True
            await self.engine.remove_session(self.session_id, self.owner)
            with contextlib.suppress(Exception):
                await self.ws.close(1000)

    async def _feed(self, message: WsFeed) -> None:
        text = self.admission.text(message.text)
        k = self.admission.k(message.k)
        step = await self.engine.feed(self.session_id, text, k, self.owner, message.exclude_special)
        self.position = step.position
        await self._send(
            {
                "type": "predictions",
                "position": step.position,
                "tokens": step.tokens,
                "logprob": step.logprob,
                "predictions": prediction_dicts(step.predictions),
            },
            message.id,
        )

    async def _rewind(self, message: WsRewind) -> None:
        """Answered like a reset (``ready`` at the new position), with the predictions
        there, so a keyboard's backspace needs no second round trip."""
        k = self.admission.k(message.k)
        step = await self.engine.rewind_session(
            self.session_id, message.tokens, k, self.owner, message.exclude_special
        )
        self.position = step.position
        answer = {
            "type": "ready",
            "session_id": self.session_id,
            "position": step.position,
            "model": self.engine.model_id,
            "predictions": prediction_dicts(step.predictions),
        }
        await self._send(answer, message.id)

    async def _generate(self, message: WsGenerate) -> None:
        request = generation_request(message, self.admission)
        self.generation = await self.engine.generate_in_session(
            self.session_id, self.owner, request
        )
        try:
            async for word in self.generation:
                await self._send(
                    {"type": "token", "word": word.word, "position": word.position}, message.id
                )
            assert self.generation.finish_reason is not None
            self.position = self.generation.position or self.position
            await self._send(
                {
                    "type": "done",
                    "finish_reason": self.generation.finish_reason.value,
                    "text": self.generation.text,
                    "position": self.position,
                },
                message.id,
            )
        finally:
            self.generation = None

    async def _send_ready(self, message_id: Any) -> None:
        await self._send(
            {
                "type": "ready",
                "session_id": self.session_id,
                "position": self.position,
                "model": self.engine.model_id,
            },
            message_id,
        )

    async def _send(self, payload: dict[str, Any], message_id: Any = None) -> None:
        if message_id is not None:
            payload["id"] = message_id
        try:
            text = orjson.dumps(payload).decode()
        except TypeError:  # an id past 64 bits: the standard library writes any int
            text = json.dumps(payload, separators=(",", ":"))
        await self.ws.send_text(text)


@dataclass(frozen=True)
class _Reply:
    """An answer to a bad message, queued so that answers keep the messages' order."""

    payload: dict[str, Any]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)
