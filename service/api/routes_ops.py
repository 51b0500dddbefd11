"""Operations: liveness, readiness, Prometheus metrics, the model card."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import errors
from service.api.auth import require_key
from service.api.deps import ready_engine
from service.api.errors import responses
from service.api.schemas import HealthResponse
from service.engine import Engine

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: 200 while the process and event loop run")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: 200 once the model is loaded, warm and served",
    responses={503: {"model": HealthResponse, "description": "not ready, with a reason"}},
)
async def readyz(request: Request) -> Any:
    engine: Engine = request.app.state.engine
    ready, reason = engine.health()
    if request.app.state.drain.draining:
        ready, reason = False, "draining"
    load_error = request.app.state.load_error
    if load_error:
        ready, reason = False, f"model failed to load: {load_error}"
    engine.metrics.ready.set(1 if ready else 0)
    body = HealthResponse(
        status="ready" if ready else "not_ready", reason=None if ready else reason
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def metrics(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    m = engine.metrics
    if engine.worker is not None:
        m.queue_depth.set(engine.worker.queue_depth())
    if engine.sessions is not None:
        m.sessions_live.set(len(engine.sessions))
    m.streams_open.set(len(request.app.state.drain.streams))
    ready, _ = engine.health()
    m.ready.set(1 if ready and not request.app.state.drain.draining else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    summary="The served model's card",
    tags=["models"],
    dependencies=[Depends(require_key)],
    responses=responses(errors.Unauthorized, errors.NotReady),
)
async def models(engine: Annotated[Engine, Depends(ready_engine)]) -> dict[str, Any]:
    return engine.model_card()
