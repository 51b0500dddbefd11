"""One pure-ASGI middleware (cheaper than BaseHTTPMiddleware) for every HTTP request:
request id, body-size limit, drain refusal, metrics and the access log line."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.drain import Drain
from service.api.errors import error_body
from service.metrics import Metrics

log = logging.getLogger("lstm_serve.access")
_OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


class BodyTooLarge(Exception):
    pass


class ServingMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, drain: Drain, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        self.max_body_bytes = max_body_bytes

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
            elif _content_length(scope) > self.max_body_bytes:
                await _send_error(
                    send_wrapper, 413, "payload_too_large", f"body over {self.max_body_bytes} bytes"
                )
                scope.setdefault("state", {})["error_code"] = "payload_too_large"
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
        template = getattr(route, "path", None) or "unmatched"
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
    return {**scope, "headers": headers}


def _content_length(scope: Scope) -> int:
    value = _header(scope, b"content-length")
    return int(value) if value and value.isdigit() else 0


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body: Any = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
