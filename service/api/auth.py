"""Bearer API keys. A session belongs to the key that made it; the owner id stored with
it is a hash of the key, never the key itself."""

from __future__ import annotations

import hashlib
import secrets

from fastapi import Request
from starlette.requests import HTTPConnection

from service.errors import Unauthorized


def owner_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def authenticate(connection: HTTPConnection, allow_query_token: bool = False) -> str | None:
    """The caller's owner id, or None when auth is off; raises ``Unauthorized``."""
    keys: frozenset[str] = connection.app.state.settings.api_key_set
    if not keys:
        return None
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = connection.query_params.get("access_token", "") if allow_query_token else ""
    token = token.strip()
    if token and any(secrets.compare_digest(token.encode(), key.encode()) for key in keys):
        return owner_id(token)
    raise Unauthorized("missing or wrong API key (Authorization: Bearer KEY)")


async def require_key(request: Request) -> str | None:
    """FastAPI dependency for every /v1 HTTP route."""
    return authenticate(request)
