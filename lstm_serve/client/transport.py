"""What the sync and async clients share: headers, error decoding, the retry policy,
Server-Sent Events parsing and WebSocket URLs. No I/O happens here."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from lstm_serve.client.errors import APIError, error_from_payload
from lstm_serve.client.results import GeneratedWord, Generation


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of ``429 overloaded`` answers (the server refused the work, so a retry is
    safe for every route).

    Attributes:
        max_retries: retries after the first try; past them the ``Overloaded`` is raised.
        default_wait_s: wait when the answer has no usable ``Retry-After``.
        max_wait_s: longest single wait; a longer ``Retry-After`` is cut to this.
    """

    max_retries: int = 3
    default_wait_s: float = 1.0
    max_wait_s: float = 30.0

    def wait_s(self, error: APIError) -> float:
        wait = self.default_wait_s if error.retry_after_s is None else error.retry_after_s
        return max(0.0, min(wait, self.max_wait_s))


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_of(response: httpx.Response) -> APIError:
    """The typed error of a non-2xx answer (its body must have been read)."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = {"error": {"code": "internal", "message": response.text[:200]}}
    return error_from_payload(payload, response.status_code, retry_after_s(response))


def check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise error_of(response)


class SseParser:
    """Server-Sent Events, one line at a time: :meth:`line` returns an event's ``data``
    (multi-line data joined) at the blank line that ends it."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def line(self, line: str) -> str | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif not line and self._data:
            return self.end()
        return None

    def end(self) -> str | None:
        """The last event's data if the stream ended without its blank line."""
        data, self._data = self._data, []
        return "\n".join(data) if data else None


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event in ``lines``."""
    parser = SseParser()
    for line in lines:
        if (data := parser.line(line)) is not None:
            yield data
    if (data := parser.end()) is not None:
        yield data


def generation_event(data: str) -> GeneratedWord | Generation:
    """One event of ``/v1/generate`` with ``stream: true``; an error event raises."""
    event = json.loads(data)
    if "error" in event:
        raise error_from_payload(event)
    if "finish_reason" in event:
        return Generation.from_json(event)
    return GeneratedWord(str(event["word"]), int(event["index"]))


def stream_url(
    base_url: str,
    session_id: str | None,
    access_token: str | None = None,
    cache: bool | None = None,
) -> str:
    """``ws(s)://host/v1/stream[?session_id=...]`` for an ``http(s)://host`` base URL
    (``cache``: a new session with, or without, a continuous cache)."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = {}
    if session_id is not None:
        query["session_id"] = session_id
    if access_token is not None:
        query["access_token"] = access_token
    if cache is not None:
        query["cache"] = "true" if cache else "false"
    path = parts.path.rstrip("/") + "/v1/stream"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def sampling(
    max_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    stop_at_eos: bool,
) -> dict[str, Any]:
    """The generation fields shared by ``/v1/generate`` and the stream's ``generate``."""
    return {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
        "stop_at_eos": stop_at_eos,
    }


def session_body(text: str, k: int, exclude_special: bool, cache: bool | None) -> dict[str, Any]:
    """The body of ``POST /v1/sessions`` (``cache`` only when chosen)."""
    body: dict[str, Any] = {"text": text, "k": k, "exclude_special": exclude_special}
    if cache is not None:
        body["cache"] = cache
    return body
