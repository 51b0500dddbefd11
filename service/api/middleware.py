"""One pure-ASGI middleware (cheaper than BaseHTTPMiddleware) for every HTTP request:
request id, in-flight accounting for the drain, metrics and the access log. Policies
(drain, auth, limits, shedding) are not here: they live in ``service.api.admission``."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.drain import Drain
from service.api.metrics import ApiMetrics

log = logging.getLogger("lstm_serve.access")
_QUIET = ("/healthz", "/readyz", "/metrics")


class ServingMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics, drain: Drain) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        # (route, method, status) -> its counter and histogram children: ``labels()``
        # looks them up under a lock on every call. Bounded: methods are the parser's.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

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

        self.drain.enter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.drain.exit()
            self._record(scope, status["code"], time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, status: int, elapsed_s: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        children = self._children.get((template, method, status))
        if children is None:
            children = (
                self.metrics.requests.labels(template, method, str(status)),
                self.metrics.request_latency.labels(template),
            )
            self._children[(template, method, status)] = children
        children[0].inc()
        children[1].observe(elapsed_s)
        code = scope.get("state", {}).get("error_code")
        if code:
            self.metrics.errors.labels(code).inc()
        if template not in _QUIET:
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
