"""Admission: every policy a request passes before it costs the engine anything.

Drain, readiness, auth, load shedding, body size and read deadline, text length, k and
max_tokens — one place, called by the HTTP routes (``deps.admit`` first, then
``read``) and by the WebSocket. Auth comes first: a client without a key learns nothing
about the schema. Bodies are JSON whatever their Content-Type (``curl -d`` works).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from service.api.drain import Drain
from service.api.load_shedding import LoopLag
from service.engine.client import (
    EngineClient,
    GenerationRequest,
    InvalidRequest,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    SamplingParams,
    Timeout,
    Unauthorized,
)
from service.settings import Settings

Body = TypeVar("Body", bound=BaseModel)


def owner_id(key: str) -> str:
    """A session belongs to the key that made it; only a hash of the key is kept."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Admission:
    def __init__(
        self, settings: Settings, drain: Drain, loop_lag: LoopLag, engine: EngineClient
    ) -> None:
        self.settings = settings
        self.drain = drain
        self.loop_lag = loop_lag
        self.engine = engine
        self._keys = settings.api_key_set

    # ---- who and whether -------------------------------------------------------------
    def authenticate(
        self, connection: HTTPConnection, allow_query_token: bool = False
    ) -> str | None:
        """The caller's owner id, or None when auth is off; raises ``Unauthorized``."""
        if not self._keys:
            return None
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = connection.query_params.get("access_token", "") if allow_query_token else ""
        token = token.strip()
        if token and any(secrets.compare_digest(token.encode(), k.encode()) for k in self._keys):
            return owner_id(token)
        raise Unauthorized("missing or wrong API key (Authorization: Bearer KEY)")

    def check_open(self) -> None:
        """Refuse new work while draining or without a live engine."""
        if self.drain.draining:
            raise NotReady("server is draining")
        if not self.engine.alive:
            raise NotReady(self.engine.dead_reason or "the engine is not running")

    def check_load(self) -> None:
        """A fast 429 while the event loop lags (requests wait unread meanwhile)."""
        if self.loop_lag.lagging:
            raise Overloaded("server overloaded (event loop lagging); retry later")

    # ---- what ------------------------------------------------------------------------
    async def read(self, request: Request, model: type[Body]) -> Body:
        """The body, validated by ``model``: its size bounded, its reading under the
        request deadline (a client that sends one byte a second gets 504 and is closed)."""
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        try:
            raw = await asyncio.wait_for(
                self._body(request, limit), self.settings.request_timeout_s
            )
        except TimeoutError:
            request.state.close_connection = True
            raise Timeout("the request body did not arrive within the deadline") from None
        try:
            return model.model_validate_json(raw)
        except ValidationError as error:
            raise invalid(error) from None

    @staticmethod
    async def _body(request: Request, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                request.state.close_connection = True
                raise PayloadTooLarge(f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def text(self, text: str) -> str:
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise PayloadTooLarge(f"text has {len(text)} characters; the limit is {limit}")
        return text

    def k(self, k: int) -> int:
        if k > self.settings.max_k:
            raise InvalidRequest(
                f"k: at most {self.settings.max_k}", {"max_k": self.settings.max_k}
            )
        return k

    def generation(
        self,
        max_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        seed: int | None,
        stop_at_eos: bool,
    ) -> GenerationRequest:
        limit = self.settings.max_tokens
        if max_tokens > limit:
            raise InvalidRequest(f"max_tokens: at most {limit}", {"max_tokens": limit})
        return GenerationRequest(
            max_tokens=max_tokens,
            sampling=SamplingParams(float(temperature), top_k, float(top_p)),
            seed=seed,
            stop_at_eos=stop_at_eos,
        )


def invalid(error: ValidationError) -> InvalidRequest:
    """A pydantic failure as the contract's ``invalid_request``, first problem first."""
    details: list[dict[str, Any]] = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    first: dict[str, Any] = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    message = first["msg"]
    if first.get("type") == "json_invalid":
        where, message = "body", "malformed JSON"
    return InvalidRequest(f"{where}: {message}", details)
