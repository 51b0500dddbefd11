"""Session routes: the engine keeps each session's (h, c); clients send only new words."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from service.api.admission import Admission
from service.api.convert import info_payload, json_response, step_payload
from service.api.deps import admit
from service.api.errors import request_body, responses
from service.api.schemas import (
    CreateSessionRequest,
    FeedRequest,
    FeedResponse,
    ForkRequest,
    RewindRequest,
    SessionInfoResponse,
    SessionStepResponse,
    StateResponse,
)
from service.engine.client import errors

Body = TypeVar("Body", bound=BaseModel)
router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_COMMON = (errors.Unauthorized, errors.NotReady, errors.Timeout, errors.Overloaded)
_KNOWN = (*_COMMON, errors.SessionNotFound, errors.SessionIncompatible)


@router.post(
    "",
    status_code=201,
    summary="Create a session, optionally with a prefix or from an exported state",
    responses=responses(
        *_COMMON,
        errors.PayloadTooLarge,
        errors.InvalidRequest,
        errors.SessionIncompatible,
        ok=SessionStepResponse,
        ok_status=201,
    ),
    openapi_extra=request_body(CreateSessionRequest),
)
async def create_session(request: Request) -> Response:
    engine, admission, owner = await admit(request)
    body = await admission.read(request, CreateSessionRequest)
    k = admission.k(body.k)
    if body.state is not None:
        if body.text:
            raise errors.InvalidRequest("give either text or state, not both")
        step = await engine.import_state(body.state, k, owner, body.exclude_special)
        return json_response(step_payload(step, with_logprob=False), 201)
    text = admission.text(body.text)
    step = await engine.create_session(text, k, owner, body.exclude_special, body.cache)
    return json_response(step_payload(step, with_logprob=False), 201)


@router.get(
    "/{session_id}",
    summary="A session's position and timestamps",
    responses=responses(*_KNOWN, ok=SessionInfoResponse),
)
async def get_session(request: Request, session_id: str) -> Response:
    engine, _, owner = await admit(request)
    return json_response(info_payload(await engine.describe_session(session_id, owner)))


@router.post(
    "/{session_id}/feed",
    summary="Feed new words; get their log-prob and predictions",
    responses=responses(*_KNOWN, errors.PayloadTooLarge, ok=FeedResponse),
    openapi_extra=request_body(FeedRequest),
)
async def feed(session_id: str, request: Request) -> Response:
    engine, admission, owner = await admit(request)
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
async def reset(request: Request, session_id: str) -> Response:
    engine, _, owner = await admit(request)
    return json_response(info_payload(await engine.reset_session(session_id, owner)))


@router.post(
    "/{session_id}/fork",
    status_code=201,
    summary="A new session (same owner) with a copy of this one's state and history",
    responses=responses(*_KNOWN, errors.SessionBusy, ok=SessionStepResponse, ok_status=201),
    openapi_extra=request_body(ForkRequest),
)
async def fork(session_id: str, request: Request) -> Response:
    engine, admission, owner = await admit(request)
    body = await _optional_body(request, admission, ForkRequest)
    k = admission.k(body.k)
    step = await engine.fork_session(session_id, k, owner, body.exclude_special)
    return json_response(step_payload(step, with_logprob=False), 201)


@router.post(
    "/{session_id}/rewind",
    summary="Undo the last n tokens (within LSTM_SERVE_SESSION_HISTORY)",
    responses=responses(*_KNOWN, errors.SessionBusy, errors.InvalidRequest, ok=SessionStepResponse),
    openapi_extra=request_body(RewindRequest),
)
async def rewind(session_id: str, request: Request) -> Response:
    engine, admission, owner = await admit(request)
    body = await admission.read(request, RewindRequest)
    k = admission.k(body.k)
    step = await engine.rewind_session(session_id, body.tokens, k, owner, body.exclude_special)
    return json_response(step_payload(step, with_logprob=False))


@router.get(
    "/{session_id}/state",
    summary="The session's state as a signed token (POST /v1/sessions {state} imports it)",
    responses=responses(*_KNOWN, ok=StateResponse),
)
async def export_state(request: Request, session_id: str) -> Response:
    engine, _, owner = await admit(request)
    token, position = await engine.export_state(session_id, owner)
    return json_response({"state": token, "position": position})


async def _optional_body(request: Request, admission: Admission, model: type[Body]) -> Body:
    """``model`` from the body, or its defaults when the body is empty."""
    if request.headers.get("content-length", "0") in ("", "0") and (
        "transfer-encoding" not in request.headers
    ):
        return model()
    return await admission.read(request, model)


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session",
    responses=responses(*_COMMON, errors.SessionNotFound),
)
async def delete(request: Request, session_id: str) -> Response:
    engine, _, owner = await admit(request)
    await engine.remove_session(session_id, owner)
    return Response(status_code=204)
