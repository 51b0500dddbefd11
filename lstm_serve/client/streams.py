"""``Stream`` and ``AsyncStream``: one WebSocket session on ``/v1/stream``.

Messages go one after another: each method sends one message and reads until its answer
(earlier answers still in flight, such as the rest of a cancelled generation, are skipped
by id). A stream is not safe to share between threads or tasks; open one per user.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from lstm_serve.client import transport
from lstm_serve.client.errors import APIError, StreamClosed
from lstm_serve.client.protocol import StreamProtocol
from lstm_serve.client.results import SessionStep, StreamDone, StreamToken

StreamEvent = StreamToken | StreamDone


def _closed(error: ConnectionClosed) -> StreamClosed:
    frame = error.rcvd
    return StreamClosed(frame.code if frame else None, frame.reason if frame else "")


class _Base:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.closed = False
        self._protocol = StreamProtocol()

    @property
    def session_id(self) -> str:
        """The stream's session; reconnect with it to resume after a disconnect."""
        return self._protocol.session_id

    @property
    def position(self) -> int:
        """Tokens the session has consumed, as of the last answer read."""
        return self._protocol.position

    @property
    def model(self) -> str:
        return self._protocol.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r}, position={self.position})"


class Stream(_Base):
    """A blocking stream (made by ``Client.stream``); ``with`` closes it, deleting the
    session; :meth:`disconnect` keeps the session so that it can be resumed.

    Raises (from every method):
        APIError: the subclass of an error answer's code (the stream stays usable, except
            when opening fails: ``SessionNotFound``, ``SessionBusy``, ``Unauthorized``,
            ``Overloaded``).
        StreamClosed: the connection ended (code 1012: the server is restarting).
        TimeoutError: no answer within ``timeout_s`` (``asyncio.TimeoutError`` before
            Python 3.11, for ``AsyncStream``).
    """

    def __init__(self, connection: ClientConnection, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._ws = connection

    @classmethod
    def connect(
        cls, url: str, headers: dict[str, str], *, open_timeout_s: float, timeout_s: float
    ) -> Stream:
        stream = cls(
            # Entered as a context manager: websockets >= 17.1 warns on a bare connect().
            connect(url, additional_headers=headers, open_timeout=open_timeout_s).__enter__(),
            timeout_s,
        )
        try:
            stream._protocol.ready(stream._receive())
        except BaseException:
            stream._ws.close()
            raise
        return stream

    def feed(self, text: str, *, k: int = 5, exclude_special: bool = False) -> SessionStep:
        """Feed ``text``; its tokens, summed logprob and the next-word predictions."""
        sent = self._send("feed", text=text, k=k, exclude_special=exclude_special)
        return self._protocol.step(self._answer(sent))

    def generate(
        self,
        *,
        max_tokens: int = 20,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[StreamEvent]:
        """Generate in the session: a ``StreamToken`` per word, then ``StreamDone``.

        Sent on the first ``next``; leaving the loop early cancels the generation (the
        words made until then stay in the session's history).
        """
        fields = transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos)
        sent = self._send("generate", **fields)
        words: list[str] = []
        try:
            while True:
                data = self._answer(sent)
                if data["type"] == "done":
                    yield self._protocol.done(data, words)
                    return
                token = self._protocol.token(data)
                words.append(token.word)
                yield token
        except GeneratorExit:
            with contextlib.suppress(StreamClosed, ConnectionClosed):
                self.cancel()
            raise

    def cancel(self) -> None:
        """Stop a running generation; its ``done`` says ``cancelled``."""
        self._send("cancel")

    def reset(self) -> int:
        """Back to the sentence start; returns the position (0)."""
        self._answer(self._send("reset"))
        return self.position

    def close(self) -> None:
        """Delete the session and close the connection (code 1000)."""
        if self.closed:
            return
        try:
            self._send("close")
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:  # until the server closes: the deletion is then done
                    self._ws.recv(timeout=self.timeout_s)
        finally:
            self.disconnect()

    def disconnect(self) -> None:
        """Close the connection but keep the session (resume it until its TTL)."""
        self.closed = True
        self._ws.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            self.close()
        except (APIError, StreamClosed, ConnectionClosed, OSError):
            if kind is None:
                raise

    def _send(self, kind: str, **fields: Any) -> int:
        message_id, text = self._protocol.message(kind, **fields)
        try:
            self._ws.send(text)
        except ConnectionClosed as error:
            raise _closed(error) from None
        return message_id

    def _receive(self) -> str:
        try:
            message = self._ws.recv(timeout=self.timeout_s)
        except ConnectionClosed as error:
            raise _closed(error) from None
        return message if isinstance(message, str) else message.decode()

    def _answer(self, message_id: int) -> dict[str, Any]:
        while (data := self._protocol.answer(self._receive(), message_id)) is None:
            pass
        return data


class AsyncStream(_Base):
    """The asyncio twin of :class:`Stream` (made by ``AsyncClient.stream``)."""

    def __init__(self, connection: AsyncConnection, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._ws = connection

    @classmethod
    async def connect(
        cls, url: str, headers: dict[str, str], *, open_timeout_s: float, timeout_s: float
    ) -> AsyncStream:
        connection = await async_connect(
            url, additional_headers=headers, open_timeout=open_timeout_s
        )
        stream = cls(connection, timeout_s)
        try:
            stream._protocol.ready(await stream._receive())
        except BaseException:
            await connection.close()
            raise
        return stream

    async def feed(self, text: str, *, k: int = 5, exclude_special: bool = False) -> SessionStep:
        sent = await self._send("feed", text=text, k=k, exclude_special=exclude_special)
        return self._protocol.step(await self._answer(sent))

    async def generate(
        self,
        *,
        max_tokens: int = 20,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> AsyncIterator[StreamEvent]:
        """``StreamToken`` per word, then ``StreamDone``. To stop early, call
        :meth:`cancel` (an abandoned async iterator is finalised only later)."""
        fields = transport.sampling(max_tokens, temperature, top_k, top_p, seed, stop_at_eos)
        sent = await self._send("generate", **fields)
        words: list[str] = []
        while True:
            data = await self._answer(sent)
            if data["type"] == "done":
                yield self._protocol.done(data, words)
                return
            token = self._protocol.token(data)
            words.append(token.word)
            yield token

    async def cancel(self) -> None:
        await self._send("cancel")

    async def reset(self) -> int:
        await self._answer(await self._send("reset"))
        return self.position

    async def close(self) -> None:
        """Delete the session and close the connection (code 1000)."""
        if self.closed:
            return
        try:
            await self._send("close")
            with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
                await asyncio.wait_for(self._drain(), self.timeout_s)
        finally:
            await self.disconnect()

    async def disconnect(self) -> None:
        """Close the connection but keep the session (resume it until its TTL)."""
        self.closed = True
        await self._ws.close()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            await self.close()
        except (APIError, StreamClosed, ConnectionClosed, OSError):
            if kind is None:
                raise

    async def _send(self, kind: str, **fields: Any) -> int:
        message_id, text = self._protocol.message(kind, **fields)
        try:
            await self._ws.send(text)
        except ConnectionClosed as error:
            raise _closed(error) from None
        return message_id

    async def _drain(self) -> None:
        async for _ in self._ws:  # until the server closes: the deletion is then done
            pass

    async def _receive(self) -> str:
        try:
            message = await asyncio.wait_for(self._ws.recv(), self.timeout_s)
        except ConnectionClosed as error:
            raise _closed(error) from None
        return message if isinstance(message, str) else message.decode()

    async def _answer(self, message_id: int) -> dict[str, Any]:
        while (data := self._protocol.answer(await self._receive(), message_id)) is None:
            pass
        return data
