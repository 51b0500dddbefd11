"""``create_app(settings)``: the FastAPI application and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.api import errors, routes_ops, routes_sessions, routes_text
from service.api.drain import Drain
from service.api.load_shedding import LoopLag
from service.api.middleware import ServingMiddleware
from service.api.stream import stream_endpoint
from service.engine import Engine, EngineConfig
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        model_path=settings.model_path,
        device=settings.device,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_queue=settings.max_queue,
        request_timeout_s=settings.request_timeout_s,
        session_ttl_s=settings.session_ttl_s,
        max_sessions=settings.max_sessions,
        session_sweep_interval_s=settings.session_sweep_interval_s,
        max_text_chars=settings.max_text_chars,
        threads=settings.threads,
        session_store=settings.session_store,
        session_durability=settings.session_durability,
        write_behind_interval_s=settings.write_behind_interval_s,
        max_resident_sessions=settings.max_resident_sessions,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(engine_config(settings), metrics)
        app.state.engine = engine
        app.state.loop_lag.start()
        app.state.load_error = None
        app.state.drain.flush = engine.flush_sessions
        # Load in the background so /healthz answers (and /readyz says why) meanwhile.
        loading = asyncio.create_task(_start(app, engine))
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await engine.stop()
            await app.state.loop_lag.stop()

    app = FastAPI(
        title="lstm-serve",
        summary="Batched, stateful serving of recurrent (LSTM) language models",
        version="0.1.0",
        lifespan=lifespan,
        **_no_native_telemetry(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.drain = Drain()
    app.state.loop_lag = LoopLag(
        settings.shed_loop_lag_ms / 1000, metrics.loop_lag, metrics.loop_lag_samples
    )
    app.state.engine = Engine(engine_config(settings), metrics)  # replaced by the lifespan
    app.state.load_error = None
    errors.install(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_text.router)
    app.include_router(routes_sessions.router)
    app.add_api_websocket_route("/v1/stream", stream_endpoint, name="stream")
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        drain=app.state.drain,
        max_body_bytes=settings.max_body_bytes,
        loop_lag=app.state.loop_lag,
    )
    return app


def _no_native_telemetry() -> dict[str, object]:
    """Newer FastAPI asks OpenTelemetry's environment on every request; we export our own
    Prometheus metrics, so switch that off where the option exists."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


async def _start(app: FastAPI, engine: Engine) -> None:
    try:
        await engine.start()
    except asyncio.CancelledError:
        raise
    except Exception as error:  # reported by /readyz; the process stays up to say why
        log.exception("model failed to load")
        app.state.load_error = str(error)
