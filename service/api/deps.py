"""Request-scoped access to what the lifespan hangs on ``app.state``.

All dependencies are ``async def``: a plain ``def`` would cost a thread-pool hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.admission import Admission
from service.engine.client import EngineClient, Overloaded


async def admitted(request: Request) -> str | None:
    """Admission for every /v1 HTTP route: auth first, then drain and readiness, then (for
    work requests) load shedding. Returns the caller's owner id (None: auth off)."""
    admission: Admission = request.app.state.admission
    owner = admission.authenticate(request)
    admission.check_open()
    if request.method == "POST":
        try:
            admission.check_load()
        except Overloaded:
            request.app.state.metrics.shed.inc()
            raise
    return owner


async def engine_of(request: Request) -> EngineClient:
    return request.app.state.engine


async def admission_of(request: Request) -> Admission:
    return request.app.state.admission


Owner = Annotated[str | None, Depends(admitted)]
EngineDep = Annotated[EngineClient, Depends(engine_of)]
AdmissionDep = Annotated[Admission, Depends(admission_of)]
