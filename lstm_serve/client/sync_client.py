"""``Client``: the blocking client (httpx) for predict, score, generate and sessions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from lstm_serve.client import transport
from lstm_serve.client.errors import APIError, Overloaded, SessionNotFound
from lstm_serve.client.results import (
    GeneratedWord,
    Generation,
    Predictions,
    Score,
    SessionInfo,
    SessionStep,
)
from lstm_serve.client.streams import Stream
from lstm_serve.client.transport import RetryPolicy, session_body

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """A blocking client of one lstm-serve server.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8000"``.
        api_key: sent as ``Authorization: Bearer KEY`` (and on the WebSocket).
        timeout_s: per-request timeout of the HTTP calls (connect, read, write).
        retry: how ``429 overloaded`` answers are retried (``RetryPolicy(max_retries=0)``
            switches retries off).
        http: an ``httpx.Client`` to use instead of a new one (not closed by ``close``).

    Raises (from every method):
        APIError: the subclass of the server's error code (``SessionNotFound``, ...).
        httpx.HTTPError: the server could not be reached or the connection broke.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._headers = transport.headers(api_key)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- stateless ----------------------------------------------------------------
    def predict(self, text: str = "", *, k: int = 5, exclude_special: bool = False) -> Predictions:
        """The ``k`` likeliest next words after ``text`` (empty: a sentence's first word)."""
        body = {"text": text, "k": k, "exclude_special": exclude_special}
        return Predictions.from_json(self._request("POST", "/v1/predict", body).json())

    def score(self, text: str) -> Score:
        """Each token's log-probability given the ones before it, and the perplexity."""
        return Score.from_json(self._request("POST", "/v1/score", {"text": text}).json())

    def generate(
        self,
        text: str = "",
        *,
        max_tokens: int = 20,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> Generation:
        """Words after ``text``; ``temperature=0`` is greedy, a ``seed`` makes it repeatable."""
        body = {
            "text": text,
            **transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos),
        }
        return Generation.from_json(self._request("POST", "/v1/generate", body).json())

    def generate_stream(
        self,
        text: str = "",
        *,
        max_tokens: int = 20,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[GeneratedWord | Generation]:
        """Like :meth:`generate`, as Server-Sent Events: a ``GeneratedWord`` per word as it
        is made, then the whole ``Generation``. The request is sent on the first ``next``;
        leaving the loop early closes the connection, which stops the generation."""
        body = {
            "text": text,
            "stream": True,
            **transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos),
        }
        for attempt in range(self.retry.max_retries + 1):
            with self._http.stream(
                "POST", "/v1/generate", json=body, headers=self._headers
            ) as response:
                if not response.is_success:
                    response.read()
                    error = transport.error_of(response)
                    if isinstance(error, Overloaded) and attempt < self.retry.max_retries:
                        time.sleep(self.retry.wait_s(error))
                        continue
                    raise error
                for data in transport.sse_data(response.iter_lines()):
                    yield transport.generation_event(data)
                return

    # ---- sessions -----------------------------------------------------------------
    def session(
        self,
        text: str = "",
        *,
        k: int = 5,
        exclude_special: bool = False,
        cache: bool | None = None,
    ) -> Session:
        """Create a server-side session (optionally fed ``text``; ``cache``: keep a
        continuous cache, None: the server's default); ``with`` deletes it."""
        body = session_body(text, k, exclude_special, cache)
        step = SessionStep.from_json(self._request("POST", "/v1/sessions", body).json())
        return Session(self, step.session_id, step.position, step)

    def resume_session(self, session_id: str) -> Session:
        """A handle on an existing session (checked with ``GET``; ``SessionNotFound``)."""
        info = SessionInfo.from_json(self._request("GET", session_path(session_id)).json())
        return Session(self, info.session_id, info.position, None)

    def stream(
        self,
        session_id: str | None = None,
        *,
        open_timeout_s: float = 10.0,
        cache: bool | None = None,
    ) -> Stream:
        """Open ``WS /v1/stream``: a new session (``cache``: with a continuous cache), or
        resume ``session_id``."""
        return Stream.connect(
            transport.stream_url(self.base_url, session_id, cache=cache),
            self._headers,
            open_timeout_s=open_timeout_s,
            timeout_s=self.timeout_s,
        )

    # ---- operations ---------------------------------------------------------------
    def model_card(self) -> dict[str, Any]:
        """``GET /v1/models``: the served model's card (id, sizes, perplexity, device)."""
        return dict(self._request("GET", "/v1/models").json())

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        for attempt in range(self.retry.max_retries + 1):
            response = self._http.request(method, path, json=body, headers=self._headers)
            if response.status_code != 429 or attempt == self.retry.max_retries:
                break
            time.sleep(self.retry.wait_s(transport.error_of(response)))
        return transport.check(response)


class Session:
    """A server-side session: its recurrent state stays on the server, so each
    :meth:`feed` sends only the new words. ``with`` deletes it on exit.

    Attributes:
        id: the session id (opaque; keep it to resume, e.g. with ``Client.stream(id)``).
        position: tokens consumed, as of the last answer this handle saw.
        last: the last feed's (or the creation's) answer.
    """

    def __init__(
        self, client: Client, session_id: str, position: int, last: SessionStep | None
    ) -> None:
        self._client = client
        self.id = session_id
        self.position = position
        self.last = last

    def feed(self, text: str, *, k: int = 5, exclude_special: bool = False) -> SessionStep:
        """Feed ``text``; returns its tokens, their summed logprob and the next predictions."""
        body = {"text": text, "k": k, "exclude_special": exclude_special}
        data = self._client._request("POST", session_path(self.id, "feed"), body).json()
        self.last = SessionStep.from_json(data, self.id)
        self.position = self.last.position
        return self.last

    def reset(self) -> SessionInfo:
        """Back to the sentence start (position 0)."""
        info = SessionInfo.from_json(
            self._client._request("POST", session_path(self.id, "reset")).json()
        )
        self.position = info.position
        return info

    def info(self) -> SessionInfo:
        """Position and timestamps (created, last used, expires)."""
        info = SessionInfo.from_json(self._client._request("GET", session_path(self.id)).json())
        self.position = info.position
        return info

    def delete(self) -> None:
        self._client._request("DELETE", session_path(self.id))

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.delete()
        except SessionNotFound:
            pass  # already deleted or expired: the goal is met
        except (APIError, httpx.HTTPError):
            if kind is None:
                raise  # else keep the error that ended the block

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, position={self.position})"


def session_path(session_id: str, action: str = "") -> str:
    path = f"/v1/sessions/{quote(session_id, safe='')}"
    return f"{path}/{action}" if action else path
