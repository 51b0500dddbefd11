"""``WS /v1/stream``: per-session stateful streaming (the protocol of ../shared/API.md).

The receive loop answers feeds, resets and closes itself, one after another, so answers
keep the messages' order without a task hand-off per message. A ``generate`` runs in a
task instead, so that the loop can still read a ``cancel``; messages that arrive during
it wait in a bounded queue that the task drains in order before it ends (a client that
floods stops being read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import TypeAdapter, ValidationError

from service.api.auth import authenticate
from service.api.convert import check_k, generation_request, prediction_dicts
from service.api.schemas import WsCancel, WsClose, WsFeed, WsGenerate, WsMessage, WsReset
from service.engine import Engine
from service.errors import InvalidRequest, NotReady, PayloadTooLarge, ServeError
from service.generation import GenerationStream
from service.sessions import Session
from service.settings import Settings

log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
_messages: TypeAdapter[Any] = TypeAdapter(WsMessage)
_PENDING_MESSAGES = 64


def _error(error: ServeError, message_id: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
    if message_id is not None:
        out["id"] = message_id
    return out


async def stream_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    await websocket.accept()
    try:
        session, engine = await _open(websocket, app.state.engine, app.state.drain.draining)
    except ServeError as error:
        app.state.engine.metrics.errors.labels(error.code).inc()
        with contextlib.suppress(Exception):
            await websocket.send_json(_error(error))
            await websocket.close(POLICY_VIOLATION, error.code)
        return
    connection = StreamConnection(websocket, engine, session, app.state.settings)
    app.state.drain.streams.add(websocket)
    try:
        await connection.serve()
    finally:
        app.state.drain.streams.discard(websocket)
        engine.sessions.detach(session)  # type: ignore[union-attr]


async def _open(websocket: WebSocket, engine: Engine, draining: bool) -> tuple[Session, Engine]:
    owner = authenticate(websocket, allow_query_token=True)
    if draining or not engine.ready:
        raise NotReady("server is draining" if draining else engine.health()[1])
    session_id = websocket.query_params.get("session_id")
    if session_id is None:
        created = await engine.create_session("", 0, owner)
        session_id = created.session_id
    session = await engine.open_session(session_id, owner, verify=True)  # or from the store
    if session.deleted:  # left the state pool between its lookup and now: load it again
        session = await engine.open_session(session_id, owner)
    engine.sessions.attach(session)  # type: ignore[union-attr]
    return session, engine


class StreamConnection:
    """One attached stream: the receive loop plus the ordered message task."""

    def __init__(
        self, websocket: WebSocket, engine: Engine, session: Session, settings: Settings
    ) -> None:
        self.ws = websocket
        self.engine = engine
        self.session = session
        self.settings = settings
        self.pending: asyncio.Queue[Any] = asyncio.Queue(_PENDING_MESSAGES)
        self.generation: GenerationStream | None = None
        self.worker: asyncio.Task[None] | None = None  # while a generate runs
        self.closed = False

    async def serve(self) -> None:
        await self._send_ready(None)
        try:
            await self._receive_loop()  # returns after a close message
            if self.worker is not None:
                await asyncio.wait_for(self.worker, self.settings.request_timeout_s)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("stream %s failed", self.session.id[:8])
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
            raw = await self.ws.receive_text()
            message = self._parse(raw)
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

    def _parse(self, raw: str) -> Any:
        message_id = None
        try:
            if len(raw) > self.settings.max_ws_message_bytes:
                raise PayloadTooLarge(f"message over {self.settings.max_ws_message_bytes} bytes")
            data = orjson.loads(raw)
            if isinstance(data, dict):
                message_id = data.get("id")
            return _messages.validate_python(data)
        except orjson.JSONDecodeError as error:
            failure: ServeError = InvalidRequest(f"not JSON: {error.msg}")
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "message"
            failure = InvalidRequest(f"{where}: {first['msg']}")
        except ServeError as error:
            failure = error
        self.engine.metrics.errors.labels(failure.code).inc()
        return _Reply(_error(failure, message_id if _is_scalar(message_id) else None))

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
            self.engine.metrics.errors.labels(error.code).inc()
            await self._send(_error(error, message.id))

    async def _handle(self, message: Any) -> None:
        if isinstance(message, WsFeed):
            step = await self.engine.feed(
                self.session.id,
                message.text,
                check_k(message.k, self.settings),
                self.session.owner,
                message.exclude_special,
            )
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
        elif isinstance(message, WsGenerate):
            await self._generate(message)
        elif isinstance(message, WsReset):
            info = await self.engine.reset_session(self.session.id, self.session.owner)
            await self._send_ready(message.id, info.position)
        elif isinstance(message, WsClose):
            self.closed = True
            await self.engine.remove_session(self.session.id, self.session.owner)
            with contextlib.suppress(Exception):
                await self.ws.close(1000)

    async def _generate(self, message: WsGenerate) -> None:
        request = generation_request(message, self.settings)
        # Reloads the state in place if a failed save left it stale.
        await self.engine.open_session(self.session.id, self.session.owner)
        self.generation = self.engine.generate_in_session(self.session, request)
        try:
            async for word in self.generation:
                await self._send(
                    {"type": "token", "word": word.word, "position": word.position}, message.id
                )
            reason = self.generation.finish_reason
            await self.engine.persist_session(self.session)  # stored before "done"
            await self._send(
                {
                    "type": "done",
                    "finish_reason": reason.value,  # type: ignore[union-attr]
                    "text": self.generation.text,
                    "position": self.session.position,
                },
                message.id,
            )
        finally:
            self.generation = None

    async def _send_ready(self, message_id: Any, position: int | None = None) -> None:
        await self._send(
            {
                "type": "ready",
                "session_id": self.session.id,
                "position": self.session.position if position is None else position,
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
