"""One exception class per error code of the contract (docs/API.md), with a common base.

Every error the server sends, over HTTP, Server-Sent Events or the WebSocket, has the
shape ``{"error": {"code", "message", "details"}}`` (on the stream: ``{"type": "error",
"code", "message"}``); :func:`error_from_payload` turns it into the class of its code, so
callers catch exactly what they can handle (``except SessionNotFound``) or everything
(``except APIError``).
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every exception this client raises itself (transport errors are httpx's
    and websockets' own)."""


class APIError(ClientError):
    """An error answer from the server.

    Attributes:
        status: the HTTP status (for an error on the WebSocket: the status the contract
            gives its code).
        code: the contract's stable error code, e.g. ``"session_not_found"``.
        message: the server's human-readable message.
        details: extra data (``None``, a list of validation problems, ...).
        retry_after_s: the server's ``Retry-After`` in seconds, when it sent one.
    """

    code = "internal"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class InvalidRequest(APIError):
    """422: a field is missing, of the wrong type or out of range, or the JSON is bad."""

    code, status = "invalid_request", 422


class Unauthorized(APIError):
    """401: auth is on and the bearer key is missing or wrong."""

    code, status = "unauthorized", 401


class SessionNotFound(APIError):
    """404: the session is unknown, expired, deleted, or owned by another key."""

    code, status = "session_not_found", 404


class SessionBusy(APIError):
    """409: another live stream is attached to the session."""

    code, status = "session_busy", 409


class SessionIncompatible(APIError):
    """409: the session's stored state was made by a different model."""

    code, status = "session_incompatible", 409


class PayloadTooLarge(APIError):
    """413: text, body or WebSocket message over the server's limit."""

    code, status = "payload_too_large", 413


class Overloaded(APIError):
    """429: queue or session capacity full; retried by the client up to ``max_retries``."""

    code, status = "overloaded", 429


class NotReady(APIError):
    """503: the model is not loaded yet, or the server is draining."""

    code, status = "not_ready", 503


class Timeout(APIError):
    """504: the request waited longer than the server's deadline."""

    code, status = "timeout", 504


class StreamClosed(ClientError):
    """The WebSocket closed while an answer was awaited (1012: the server restarts;
    reconnect with the session id to resume)."""

    def __init__(self, close_code: int | None, reason: str = "") -> None:
        super().__init__(f"stream closed ({close_code}{': ' + reason if reason else ''})")
        self.close_code = close_code
        self.reason = reason


ERRORS: dict[str, type[APIError]] = {
    kind.code: kind
    for kind in (
        InvalidRequest,
        Unauthorized,
        SessionNotFound,
        SessionBusy,
        SessionIncompatible,
        PayloadTooLarge,
        Overloaded,
        NotReady,
        Timeout,
    )
}


def error_from_payload(
    payload: Any, status: int | None = None, retry_after_s: float | None = None
) -> APIError:
    """The exception for an error body (``{"error": {...}}``) or stream error message.

    Codes outside the contract (``not_found`` for an unknown path, ``internal``) give a
    plain :class:`APIError` carrying that code.
    """
    body = payload.get("error", payload) if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        return APIError(f"unexpected answer: {payload!r:.200}", status=status)
    code = str(body.get("code", "internal"))
    kind = ERRORS.get(code, APIError)
    return kind(
        str(body.get("message", "")),
        status=status,
        code=code,
        details=body.get("details"),
        retry_after_s=retry_after_s,
    )
