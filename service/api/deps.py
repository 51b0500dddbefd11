"""Request-scoped access to what the lifespan hangs on ``app.state``.

All dependencies are ``async def``: a plain ``def`` would cost a thread-pool hop per request.
"""

from __future__ import annotations

from fastapi import Request

from service.engine import Engine
from service.errors import NotReady
from service.settings import Settings


async def ready_engine(request: Request) -> Engine:
    """The engine, or ``not_ready`` while it loads, drains or after its worker died."""
    engine: Engine = request.app.state.engine
    if request.app.state.drain.draining:
        raise NotReady("server is draining")
    if not engine.ready:
        raise NotReady(engine.health()[1])
    return engine


async def settings_of(request: Request) -> Settings:
    return request.app.state.settings
