"""One pure-ASGI middleware (cheaper than BaseHTTPMiddleware) for every HTTP request:
request id, body-size limit, drain refusal, load shedding, metrics and the access log."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import shortcuts
from service.api.drain import Drain
from service.api.errors import error_body
from service.api.load_shedding import LoopLag
from service.metrics import Metrics

log = logging.getLogger("lstm_serve.access")
_OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
_WORK_PATHS = ("/v1/predict", "/v1/score", "/v1/generate", "/v1/sessions")
_SESSION_ACTIONS = ("feed", "reset")


class BodyTooLarge(Exception):
    pass


class ServingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        drain: Drain,
        max_body_bytes: int,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        self.max_body_bytes = max_body_bytes
        self.loop_lag = loop_lag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or f"{random.getrandbits(64):016x}"
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path = scope["path"]
        self.drain.enter()
        try:
            if self.drain.draining and not path.startswith(_OPEN_PATHS):
                await _send_error(send_wrapper, 503, "not_ready", "server is draining")
                scope.setdefault("state", {})["error_code"] = "not_ready"
            elif self._shed(scope):
                await _send_error(
                    send_wrapper,
                    429,
                    "overloaded",
                    "server overloaded (event loop lagging); retry later",
                    {"retry_after_s": 1},
                    [(b"retry-after", b"1")],
                )
                scope.setdefault("state", {})["error_code"] = "overloaded"
                self.metrics.shed.inc()
            elif _content_length(scope) > self.max_body_bytes:
                await _send_error(
                    send_wrapper, 413, "payload_too_large", f"body over {self.max_body_bytes} bytes"
                )
                scope.setdefault("state", {})["error_code"] = "payload_too_large"
            elif shortcut := shortcuts.match(scope):
                await shortcuts.answer(
                    *shortcut,
                    _as_json(scope),
                    self._limited(scope, receive),
                    send_wrapper,
                    self.app,
                )
            else:
                await self.app(_as_json(scope), self._limited(scope, receive), send_wrapper)
        except BodyTooLarge:
            await _send_error(
                send_wrapper, 413, "payload_too_large", f"body over {self.max_body_bytes} bytes"
            )
            scope.setdefault("state", {})["error_code"] = "payload_too_large"
        finally:
            self.drain.exit()
            self._record(scope, status["code"], time.perf_counter() - started, request_id)

    def _shed(self, scope: Scope) -> bool:
        """Work requests (POST under /v1/) while the loop lags; reads and deletes pass."""
        lag = self.loop_lag
        return (
            lag is not None
            and lag.lagging
            and scope["method"] == "POST"
            and scope["path"].startswith("/v1/")
        )

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        seen = 0
        scope_state = scope.setdefault("state", {})

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    scope_state["body_too_large"] = True  # FastAPI turns this into a 400
                    raise BodyTooLarge
            return message

        return limited

    def _record(self, scope: Scope, status: int, elapsed_s: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or _unrouted_template(scope)
        method = scope["method"]
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.request_latency.labels(template).observe(elapsed_s)
        code = scope.get("state", {}).get("error_code")
        if code:
            self.metrics.errors.labels(code).inc()
        if template not in ("/healthz", "/readyz", "/metrics"):
            log.info(
                "%s %s %d %.1fms",
                method,
                template,
                status,
                elapsed_s * 1000,
                extra={
                    "request_id": request_id,
                    "status": status,
                    "route": template,
                    "duration_ms": round(elapsed_s * 1000, 2),
                },
            )


def _unrouted_template(scope: Scope) -> str:
    """The route template of a request answered before routing (shed), else "unmatched"."""
    path = scope["path"]
    if path in _WORK_PATHS:
        return path
    action = shortcuts.session_action(path)
    if action is not None and action[1] in _SESSION_ACTIONS:
        return f"/v1/sessions/{{session_id}}/{action[1]}"
    return "unmatched"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text = value.decode("latin-1")[:128]
            return text if text.isprintable() else None
    return None


def _as_json(scope: Scope) -> Scope:
    """Bodies are JSON whatever the Content-Type says (``curl -d`` sends a form type)."""
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return scope
    content_type = _header(scope, b"content-type") or ""
    if "json" in content_type:
        return scope
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers  # in place: the route and error code set downstream stay visible
    return scope


def _content_length(scope: Scope) -> int:
    value = _header(scope, b"content-length")
    return int(value) if value and value.isdigit() else 0


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body: Any = json.dumps(error_body(code, message, details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
