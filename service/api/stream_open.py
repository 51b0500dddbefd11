"""Opening a stream: admission, the query parameters, then the session claimed in the engine.

``/v1/stream`` makes a new session (``?cache=true``: with a continuous cache);
``?session_id=ID`` attaches to an existing one, which no other stream may hold.
"""

from __future__ import annotations

from fastapi import WebSocket

from service.api.admission import Admission
from service.engine.client import EngineClient, InvalidRequest

MAX_SESSION_ID_CHARS = 256


async def open_stream(
    websocket: WebSocket, admission: Admission, engine: EngineClient
) -> tuple[str, int]:
    """Admission, then claim the session in the engine (a new one without ``session_id``)."""
    owner = admission.authenticate(websocket, allow_query_token=True)
    admission.check_open()
    session_id = websocket.query_params.get("session_id")
    if session_id is not None and len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidRequest(f"session_id: at most {MAX_SESSION_ID_CHARS} characters")
    info = await engine.attach_stream(session_id, owner, _cache_flag(websocket))
    websocket.state.owner = owner
    return info.session_id, info.position


def _cache_flag(websocket: WebSocket) -> bool | None:
    """``?cache=true|false`` for a new session (absent: the server's setting)."""
    value = websocket.query_params.get("cache")
    if value is None:
        return None
    if value.lower() not in ("true", "false", "1", "0"):
        raise InvalidRequest("cache: true or false")
    return value.lower() in ("true", "1")
