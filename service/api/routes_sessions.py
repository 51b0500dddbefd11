"""Session routes: the server keeps each session's (h, c); clients send only new words."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from service import errors
from service.api.auth import require_key
from service.api.convert import (
    check_k,
    json_response,
    prediction_items,
    session_info,
)
from service.api.deps import ready_engine, settings_of
from service.api.errors import responses
from service.api.schemas import (
    CreateSessionRequest,
    FeedRequest,
    FeedResponse,
    SessionInfoResponse,
    SessionStepResponse,
)
from service.api.shortcuts import feed_payload
from service.engine import Engine
from service.settings import Settings

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
EngineDep = Annotated[Engine, Depends(ready_engine)]
Owner = Annotated[str | None, Depends(require_key)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
_COMMON = (errors.Unauthorized, errors.NotReady, errors.Timeout, errors.Overloaded)


@router.post(
    "",
    status_code=201,
    summary="Create a session, optionally with a prefix",
    responses=responses(*_COMMON, errors.PayloadTooLarge),
)
async def create_session(
    body: CreateSessionRequest, engine: EngineDep, owner: Owner, settings: SettingsDep
) -> SessionStepResponse:
    step = await engine.create_session(
        body.text, check_k(body.k, settings), owner, body.exclude_special
    )
    return SessionStepResponse(
        session_id=step.session_id,
        position=step.position,
        tokens=step.tokens,
        predictions=prediction_items(step.predictions),
    )


@router.get(
    "/{session_id}",
    summary="A session's position and timestamps",
    responses=responses(*_COMMON, errors.SessionNotFound, errors.SessionIncompatible),
)
async def get_session(session_id: str, engine: EngineDep, owner: Owner) -> SessionInfoResponse:
    return session_info(await engine.describe_session(session_id, owner))


@router.post(
    "/{session_id}/feed",
    summary="Feed new words; get their log-prob and predictions",
    response_model=FeedResponse,
    responses=responses(
        *_COMMON, errors.SessionNotFound, errors.SessionIncompatible, errors.PayloadTooLarge
    ),
)
async def feed(
    session_id: str, body: FeedRequest, engine: EngineDep, owner: Owner, settings: SettingsDep
) -> Response:
    """Valid requests are usually answered by ``service.api.shortcuts`` before this."""
    k = check_k(body.k, settings)
    return json_response(await feed_payload(engine, session_id, body, k, owner))


@router.post(
    "/{session_id}/reset",
    summary="Back to the sentence start, position 0",
    responses=responses(*_COMMON, errors.SessionNotFound, errors.SessionIncompatible),
)
async def reset(session_id: str, engine: EngineDep, owner: Owner) -> SessionInfoResponse:
    return session_info(await engine.reset_session(session_id, owner))


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session",
    responses=responses(*_COMMON, errors.SessionNotFound),
)
async def delete(session_id: str, engine: EngineDep, owner: Owner) -> Response:
    await engine.remove_session(session_id, owner)
    return Response(status_code=204)
