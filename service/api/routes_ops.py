"""Operations: liveness, readiness, Prometheus metrics, the model card."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import admit, parts
from service.api.errors import responses
from service.api.schemas import HealthResponse
from service.api.schemas_openai import model_list
from service.engine.client import errors
from service.metrics_setup import render

router = APIRouter(tags=["operations"])
_STARTED = int(time.time())  # the models' "created" (OpenAI's list wants one)


@router.get("/healthz", summary="Liveness: 200 while the process and event loop run")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: 200 while the engine is loaded, serving and its session store up",
    responses={503: {"model": HealthResponse, "description": "not ready, with a reason"}},
)
async def readyz(request: Request) -> Any:
    engine = parts(request)[0]
    ready, reason = await engine.health()
    if request.app.state.drain.draining:
        ready, reason = False, "draining"
    request.app.state.metrics.ready.set(1 if ready else 0)
    body = HealthResponse(
        status="ready" if ready else "not_ready", reason=None if ready else reason
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus text format (every process)", response_class=Response)
async def metrics(request: Request) -> Response:
    engine = parts(request)[0]
    state = request.app.state
    state.metrics.streams_open.set(len(state.drain.streams))
    state.metrics.ready.set(1 if engine.alive and not state.drain.draining else 0)
    return Response(render(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    summary="The served model's card, also as OpenAI's model list (data: [card])",
    tags=["models"],
    responses=responses(errors.Unauthorized, errors.NotReady),
)
async def models(request: Request) -> dict[str, Any]:
    engine, _, _ = await admit(request)
    return model_list(engine.model_card(), _STARTED)
