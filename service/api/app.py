"""``create_app(settings, engine_address)``: the FastAPI application of one API process."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from service.api import errors, routes_openai, routes_ops, routes_sessions, routes_text, routes_ui
from service.api.admission import Admission
from service.api.drain import Drain
from service.api.load_shedding import LoopLag
from service.api.metrics import ApiMetrics
from service.api.middleware import ServingMiddleware
from service.api.openapi_text import OPENAPI_DESCRIPTION
from service.api.stream import stream_endpoint
from service.engine.client import EngineClient
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, engine_address: str) -> FastAPI:
    """The API of one process; its lifespan connects to the engine at ``engine_address``
    (the supervisor starts the engine first, so the app is ready once connected)."""
    metrics = ApiMetrics()
    engine = EngineClient(engine_address, settings.request_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.connect()
        app.state.drain.flush = engine.flush_sessions
        app.state.loop_lag.start()
        try:
            yield
        finally:
            await app.state.loop_lag.stop()
            await engine.close()

    app = FastAPI(
        title="lstm-serve",
        summary="Batched, stateful serving of recurrent (LSTM) language models",
        version="0.1.0",
        description=OPENAPI_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        **_no_native_telemetry(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine
    app.state.drain = Drain()
    app.state.loop_lag = LoopLag(
        settings.shed_loop_lag_ms / 1000, metrics.loop_lag, metrics.loop_lag_samples
    )
    app.state.admission = Admission(settings, app.state.drain, app.state.loop_lag, engine)
    errors.install(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_text.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_openai.router)
    routes_ui.install(app)
    app.add_api_websocket_route("/v1/stream", stream_endpoint, name="stream")
    app.add_middleware(ServingMiddleware, metrics=metrics, drain=app.state.drain)
    return app


def _no_native_telemetry() -> dict[str, Any]:
    """Newer FastAPI asks OpenTelemetry's environment on every request; we export our own
    Prometheus metrics, so switch that off where the option exists."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}
