"""Request-scoped access to what the lifespan hangs on ``app.state``.

One dependency, ``Owner`` (admission: auth, drain, readiness, shedding), is ``async def``:
a plain ``def`` would cost a thread-pool hop per request. The engine client and admission
object come from ``parts(request)``.
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


def parts(request: Request) -> tuple[EngineClient, Admission]:
    """The engine client and admission of this app. Every route reads them here rather than
    through ``Depends``: a dependency per object costs the hot routes measurable CPU."""
    state = request.app.state
    return state.engine, state.admission


Owner = Annotated[str | None, Depends(admitted)]
