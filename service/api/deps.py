"""Request-scoped access to what the lifespan hangs on ``app.state``.

Every /v1 route starts with ``await admit(request)``: admission (auth, drain, readiness,
shedding), then the engine client and admission object. It is a call, not a FastAPI
``Depends``: solving a dependency per request cost the API process about a tenth of its
CPU on a predict (py-spy under wrk, BENCHMARKS.md §0.2).
"""

from __future__ import annotations

from fastapi import Request

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


def parts(request: Request) -> tuple[EngineClient, Admission]:
    """The engine client and admission of this app (routes outside /v1 need no admission)."""
    state = request.app.state
    return state.engine, state.admission


async def admit(request: Request) -> tuple[EngineClient, Admission, str | None]:
    """``admitted``, then ``parts``: the first line of every /v1 route."""
    owner = await admitted(request)
    return (*parts(request), owner)
