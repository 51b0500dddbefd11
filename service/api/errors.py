"""The one table from typed errors to HTTP status and WebSocket error messages, and
handlers that give every error — FastAPI's own 404/405/422 and malformed JSON included —
the contract's one shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.schemas import ErrorResponse
from service.engine.client import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ServeError], int] = {
    errors.InvalidRequest: 422,
    errors.Unauthorized: 401,
    errors.SessionNotFound: 404,
    errors.SessionBusy: 409,
    errors.SessionIncompatible: 409,
    errors.PayloadTooLarge: 413,
    errors.Overloaded: 429,
    errors.NotReady: 503,
    errors.Timeout: 504,
}
_FRAMEWORK_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    401: "unauthorized",
    503: "not_ready",
}


def _kind(error: errors.ServeError) -> type[errors.ServeError] | None:
    """The table's entry for ``error``: its class or the nearest base the table knows."""
    for kind in type(error).__mro__:
        if kind in STATUS:
            return kind
    return None


def status_of(error: errors.ServeError) -> int:
    kind = _kind(error)
    return 500 if kind is None else STATUS[kind]


def ws_error(error: errors.ServeError, message_id: Any = None) -> dict[str, Any]:
    """The WebSocket ``error`` message for ``error`` (unknown kinds: ``internal``)."""
    known = _kind(error) is not None
    out: dict[str, Any] = {
        "type": "error",
        "code": error.code if known else "internal",
        "message": error.message if known else "internal error",
    }
    if message_id is not None:
        out["id"] = message_id
    return out


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(error: errors.ServeError, request: Request | None = None) -> JSONResponse:
    headers = {}
    if isinstance(error, errors.Overloaded):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if request is not None and getattr(request.state, "close_connection", False):
        headers["Connection"] = "close"
    known = _kind(error) is not None
    code = error.code if known else "internal"
    message = error.message if known else "internal error"
    details = error.details if known else None
    return JSONResponse(error_body(code, message, details), status_of(error), headers=headers)


def responses(
    *kinds: type[errors.ServeError],
    ok: type[BaseModel] | None = None,
    ok_status: int = 200,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: the answer's model (``ok``) and the errors a route
    can return."""
    out: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        out[ok_status] = {"model": ok, "description": "the answer"}
    listed: tuple[type[errors.ServeError], ...] = (errors.InvalidRequest, *kinds)
    for kind in listed:
        out[STATUS[kind]] = {"model": ErrorResponse, "description": kind.__doc__ or kind.code}
    return out


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a lean route that reads and validates its body itself
    (so that admission, auth included, runs before the body is looked at)."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: request bodies are flat models")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]


def install(app: FastAPI) -> None:
    """Register the handlers; no response ever carries a stack trace."""

    @app.exception_handler(errors.ServeError)
    async def _serve_error(request: Request, exc: errors.ServeError) -> JSONResponse:
        request.state.error_code = exc.code
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.state.error_code = "invalid_request"
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"][1:]) or "body"
        if first.get("type") == "json_invalid":
            where, first["msg"] = "body", "malformed JSON"
        return JSONResponse(error_body("invalid_request", f"{where}: {first['msg']}", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if getattr(request.state, "body_too_large", False):
            request.state.error_code = "payload_too_large"
            return JSONResponse(error_body("payload_too_large", "request body too large"), 413)
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bad bytes
            request.state.error_code = "invalid_request"
            return JSONResponse(error_body("invalid_request", "body: malformed JSON"), 422)
        code = _FRAMEWORK_CODES.get(exc.status_code, "invalid_request")
        request.state.error_code = code
        return JSONResponse(
            error_body(code, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        request.state.error_code = "internal"
        return JSONResponse(error_body("internal", "internal error"), 500)
