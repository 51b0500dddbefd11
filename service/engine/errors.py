"""Typed errors with the contract's stable codes; the API layer maps them to HTTP.

The engine raises these and knows nothing of HTTP. ``code`` is the ``error.code`` of
``../shared/API.md``; the one status table lives in ``service.api.errors``.
"""

from __future__ import annotations

from typing import Any


class ServeError(Exception):
    """Base of every error a client may see."""

    code = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(ServeError):
    code = "invalid_request"


class Unauthorized(ServeError):
    code = "unauthorized"


class SessionNotFound(ServeError):
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}")


class SessionBusy(ServeError):
    code = "session_busy"


class SessionIncompatible(ServeError):
    code = "session_incompatible"


class PayloadTooLarge(ServeError):
    code = "payload_too_large"


class Overloaded(ServeError):
    """Queue or capacity full; the client should retry after ``retry_after_s``."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, {"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class NotReady(ServeError):
    code = "not_ready"


class Timeout(ServeError):
    code = "timeout"


ALL_ERRORS: tuple[type[ServeError], ...] = (
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

_BY_CODE = {kind.code: kind for kind in ALL_ERRORS}


def from_code(code: str, message: str, details: Any = None) -> ServeError:
    """The typed error a code names (an engine answer across the channel); unknown codes
    become a plain ``ServeError`` ("internal")."""
    kind = _BY_CODE.get(code, ServeError)
    error = kind.__new__(kind)
    ServeError.__init__(error, message, details)
    if isinstance(error, Overloaded):
        error.retry_after_s = int((details or {}).get("retry_after_s", 1))
    return error
