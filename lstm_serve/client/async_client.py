"""``AsyncClient``: the asyncio twin of ``Client`` (same methods, awaited)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from types import TracebackType
from typing import Any

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
from lstm_serve.client.streams import AsyncStream
from lstm_serve.client.sync_client import DEFAULT_URL, session_path
from lstm_serve.client.transport import RetryPolicy, session_body


class AsyncClient:
    """An asyncio client of one lstm-serve server; arguments as for ``Client``.

    ``async with AsyncClient(url) as client:`` closes its connections on exit.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)
        self._headers = transport.headers(api_key)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def predict(
        self, text: str = "", *, k: int = 5, exclude_special: bool = False
    ) -> Predictions:
        body = {"text": text, "k": k, "exclude_special": exclude_special}
        return Predictions.from_json((await self._request("POST", "/v1/predict", body)).json())

    async def score(self, text: str) -> Score:
        return Score.from_json((await self._request("POST", "/v1/score", {"text": text})).json())

    async def generate(
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
        body = {
            "text": text,
            **transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos),
        }
        return Generation.from_json((await self._request("POST", "/v1/generate", body)).json())

    async def generate_stream(
        self,
        text: str = "",
        *,
        max_tokens: int = 20,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> AsyncIterator[GeneratedWord | Generation]:
        """``GeneratedWord`` per word as it is made, then the whole ``Generation``."""
        body = {
            "text": text,
            "stream": True,
            **transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos),
        }
        for attempt in range(self.retry.max_retries + 1):
            async with self._http.stream(
                "POST", "/v1/generate", json=body, headers=self._headers
            ) as response:
                if not response.is_success:
                    await response.aread()
                    error = transport.error_of(response)
                    if isinstance(error, Overloaded) and attempt < self.retry.max_retries:
                        await asyncio.sleep(self.retry.wait_s(error))
                        continue
                    raise error
                parser = transport.SseParser()
                async for line in response.aiter_lines():
                    if (data := parser.line(line)) is not None:
                        yield transport.generation_event(data)
                if (data := parser.end()) is not None:
                    yield transport.generation_event(data)
                return

    def session(
        self,
        text: str = "",
        *,
        k: int = 5,
        exclude_special: bool = False,
        cache: bool | None = None,
    ) -> _OpeningSession:
        """Create a session: ``s = await client.session()``, or ``async with
        client.session() as s:`` which deletes it on exit (``cache``: as ``Client``)."""
        body = session_body(text, k, exclude_special, cache)
        return _OpeningSession(self, body)

    async def resume_session(self, session_id: str) -> AsyncSession:
        data = (await self._request("GET", session_path(session_id))).json()
        info = SessionInfo.from_json(data)
        return AsyncSession(self, info.session_id, info.position, None)

    async def stream(
        self,
        session_id: str | None = None,
        *,
        open_timeout_s: float = 10.0,
        cache: bool | None = None,
    ) -> AsyncStream:
        """Open ``WS /v1/stream``: a new session (``cache``: with a continuous cache), or
        resume ``session_id``."""
        return await AsyncStream.connect(
            transport.stream_url(self.base_url, session_id, cache=cache),
            self._headers,
            open_timeout_s=open_timeout_s,
            timeout_s=self.timeout_s,
        )

    async def model_card(self) -> dict[str, Any]:
        return dict((await self._request("GET", "/v1/models")).json())

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        for attempt in range(self.retry.max_retries + 1):
            response = await self._http.request(method, path, json=body, headers=self._headers)
            if response.status_code != 429 or attempt == self.retry.max_retries:
                break
            await asyncio.sleep(self.retry.wait_s(transport.error_of(response)))
        return transport.check(response)


class AsyncSession:
    """The asyncio twin of ``Session``."""

    def __init__(
        self, client: AsyncClient, session_id: str, position: int, last: SessionStep | None
    ) -> None:
        self._client = client
        self.id = session_id
        self.position = position
        self.last = last

    async def feed(self, text: str, *, k: int = 5, exclude_special: bool = False) -> SessionStep:
        body = {"text": text, "k": k, "exclude_special": exclude_special}
        response = await self._client._request("POST", session_path(self.id, "feed"), body)
        self.last = SessionStep.from_json(response.json(), self.id)
        self.position = self.last.position
        return self.last

    async def reset(self) -> SessionInfo:
        response = await self._client._request("POST", session_path(self.id, "reset"))
        info = SessionInfo.from_json(response.json())
        self.position = info.position
        return info

    async def info(self) -> SessionInfo:
        info = SessionInfo.from_json(
            (await self._client._request("GET", session_path(self.id))).json()
        )
        self.position = info.position
        return info

    async def delete(self) -> None:
        await self._client._request("DELETE", session_path(self.id))

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.delete()
        except SessionNotFound:
            pass
        except (APIError, httpx.HTTPError):
            if kind is None:
                raise

    def __repr__(self) -> str:
        return f"AsyncSession(id={self.id!r}, position={self.position})"


class _OpeningSession:
    """What ``AsyncClient.session`` returns: awaitable, and an async context manager."""

    def __init__(self, client: AsyncClient, body: dict[str, Any]) -> None:
        self._client = client
        self._body = body
        self._session: AsyncSession | None = None

    async def _create(self) -> AsyncSession:
        response = await self._client._request("POST", "/v1/sessions", self._body)
        step = SessionStep.from_json(response.json())
        return AsyncSession(self._client, step.session_id, step.position, step)

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._create().__await__()

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._create()
        return self._session

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._session is not None
        await self._session.__aexit__(*exc_info)
