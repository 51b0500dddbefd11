"""Session routes: the engine keeps each session's (h, c); clients send only new words."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api.convert import info_payload, json_response, step_payload
from service.api.deps import AdmissionDep, EngineDep, Owner
from service.api.errors import request_body, responses
from service.api.schemas import (
    CreateSessionRequest,
    FeedRequest,
    FeedResponse,
    SessionInfoResponse,
    SessionStepResponse,
)
from service.engine.client import errors

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_COMMON = (errors.Unauthorized, errors.NotReady, errors.Timeout, errors.Overloaded)
_KNOWN = (*_COMMON, errors.SessionNotFound, errors.SessionIncompatible)


@router.post(
    "",
    status_code=201,
    summary="Create a session, optionally with a prefix",
    responses=responses(*_COMMON, errors.PayloadTooLarge, ok=SessionStepResponse, ok_status=201),
    openapi_extra=request_body(CreateSessionRequest),
)
async def create_session(
    request: Request, owner: Owner, engine: EngineDep, admission: AdmissionDep
) -> Response:
    body = await admission.read(request, CreateSessionRequest)
    k = admission.k(body.k)
    step = await engine.create_session(admission.text(body.text), k, owner, body.exclude_special)
    return json_response(step_payload(step, with_logprob=False), 201)


@router.get(
    "/{session_id}",
    summary="A session's position and timestamps",
    responses=responses(*_KNOWN, ok=SessionInfoResponse),
)
async def get_session(session_id: str, owner: Owner, engine: EngineDep) -> Response:
    return json_response(info_payload(await engine.describe_session(session_id, owner)))


@router.post(
    "/{session_id}/feed",
    summary="Feed new words; get their log-prob and predictions",
    responses=responses(*_KNOWN, errors.PayloadTooLarge, ok=FeedResponse),
    openapi_extra=request_body(FeedRequest),
)
async def feed(
    session_id: str, request: Request, owner: Owner, engine: EngineDep, admission: AdmissionDep
) -> Response:
    body = await admission.read(request, FeedRequest)
    k = admission.k(body.k)
    text = admission.text(body.text)
    step = await engine.feed(session_id, text, k, owner, body.exclude_special)
    return json_response(step_payload(step, with_logprob=True))


@router.post(
    "/{session_id}/reset",
    summary="Back to the sentence start, position 0",
    responses=responses(*_KNOWN, ok=SessionInfoResponse),
)
async def reset(session_id: str, owner: Owner, engine: EngineDep) -> Response:
    return json_response(info_payload(await engine.reset_session(session_id, owner)))


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session",
    responses=responses(*_COMMON, errors.SessionNotFound),
)
async def delete(session_id: str, owner: Owner, engine: EngineDep) -> Response:
    await engine.remove_session(session_id, owner)
    return Response(status_code=204)
