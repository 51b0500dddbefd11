"""The engine process's side of the channel: a ZeroMQ ROUTER that serves API processes.

Each incoming message is a list of requests (``service.engine.wire``). A predict, and a
feed of a session held here, is queued on the worker at once and answered from its work
item's future; any other request runs as its own task against the ``Engine``. Results go
back to the API process that asked. Replies are collected and sent once per event-loop
turn, one message per API process, so a step that finishes 64 requests costs one system
call, not 64. The socket is read from the loop's reader callback
(``service.engine.loop_socket``), not pyzmq's futures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import zmq

from service.engine import server_values as values
from service.engine import wire
from service.engine.core import Engine
from service.engine.deadlines import Deadlines
from service.engine.errors import ServeError
from service.engine.generation import GenerationStream
from service.engine.item_calls import ItemCalls, Key
from service.engine.loop_socket import LoopSocket

log = logging.getLogger(__name__)
DEADLINE_MARGIN_S = 0.5


class EngineServer:
    def __init__(self, engine: Engine, address: str) -> None:
        self.engine = engine
        self.address = address
        # Every call ends by its deadline, whatever it waits for (a frozen session store
        # included); the work items inside have the same deadline, this is the backstop.
        self.deadline_s = engine.config.request_timeout_s + DEADLINE_MARGIN_S
        self._socket = LoopSocket(zmq.ROUTER, self._receive)
        self._outbox: dict[bytes, list[wire.Reply]] = {}
        self._flush_scheduled = False
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._items = ItemCalls(engine, self._reply, self._start_task)  # no task each
        self._expired: set[Key] = set()
        self._deadlines = Deadlines()  # the backstop of every call but a generation
        self._handler_table: dict[type, Callable[[bytes, Any], Awaitable[Any]]] = {}
        self._streams: dict[Key, GenerationStream] = {}

    def start(self) -> None:
        self._socket.socket.bind(self.address)
        self._handler_table = self._handlers()
        self._socket.start()

    async def stop(self) -> None:
        """Stop reading requests; what runs finishes (or fails) on its own."""
        self._socket.stop_reading()
        pending = [*self._running.values(), *self._items.futures()]
        if pending:
            await asyncio.wait([f for f in pending if f is not None], timeout=5)
        self._deadlines.close()
        self._flush()
        self._socket.close()

    # ---- receiving -------------------------------------------------------------------
    def _receive(self, frames: list[bytes]) -> None:
        identity, payload = frames
        try:
            requests = wire.REQUESTS.decode(payload)
        except msgspec.DecodeError:
            log.exception("undecodable message from an API process")
            return
        for request in requests:
            self._dispatch(identity, request)

    def _dispatch(self, identity: bytes, request: Any) -> None:
        key = (identity, request.rid)
        if isinstance(request, wire.Cancel):
            self._cancel(key)
            return
        if type(request) is wire.Predict:
            self._items.start_predict(identity, request)
            return
        if type(request) is wire.Feed and self._items.start_feed(identity, request):
            return
        self._start_task(identity, request)

    def _start_task(self, identity: bytes, request: Any) -> None:
        key = (identity, request.rid)
        handler = self._handler_table.get(type(request))
        if handler is None:
            self._reply(identity, wire.Failure(request.rid, "internal", "unknown request"))
            return
        task = asyncio.create_task(self._run(identity, request, handler))
        self._running[key] = task
        if not isinstance(request, wire.Generate):  # a stream: its items have deadlines
            deadline = time.monotonic() + self.deadline_s
            self._deadlines.watch(deadline, task, lambda: self._expire(key))
        task.add_done_callback(lambda _: self._finished(key))

    def _expire(self, key: Key) -> None:
        """The backstop deadline of a call (from the shared ``Deadlines`` sweep)."""
        task = self._running.get(key)
        if task is not None:
            self._expired.add(key)
            task.cancel()

    def _finished(self, key: Key) -> None:
        self._running.pop(key, None)
        self._expired.discard(key)

    def _cancel(self, key: Key) -> None:
        if self._items.cancel(key):
            return
        stream = self._streams.get(key)
        if stream is not None:
            stream.cancel()  # the generation ends with a "cancelled" Done
            return
        task = self._running.get(key)
        if task is not None:
            task.cancel()

    def _handlers(self) -> dict[type, Callable[[bytes, Any], Awaitable[Any]]]:
        return {
            wire.Hello: self._hello,
            wire.Health: self._health,
            wire.Score: self._score,
            wire.Generate: self._generate,
            wire.CreateSession: self._create_session,
            wire.Feed: self._feed,
            wire.ResetSession: self._reset,
            wire.DescribeSession: self._describe,
            wire.DeleteSession: self._delete,
            wire.ForkSession: self._fork,
            wire.RewindSession: self._rewind,
            wire.ExportState: self._export,
            wire.ImportState: self._import,
            wire.AttachStream: self._attach,
            wire.DetachStream: self._detach,
            wire.FlushSessions: self._flush_sessions,
        }

    async def _run(
        self, identity: bytes, request: Any, handler: Callable[[bytes, Any], Awaitable[Any]]
    ) -> None:
        rid = request.rid
        try:
            value = await handler(identity, request)
        except ServeError as error:
            self._reply(identity, values.failure(rid, error))
            return
        except asyncio.CancelledError:
            if (identity, rid) in self._expired:
                message = f"no answer within {self.engine.config.request_timeout_s}s"
                self._reply(identity, wire.Failure(rid, "timeout", message))
                return
            self._reply(identity, wire.Failure(rid, "cancelled", "cancelled"))
            raise
        except Exception:
            log.exception("engine call %s failed", type(request).__name__)
            self._reply(identity, wire.Failure(rid, "internal", "internal error"))
            return
        if not isinstance(request, wire.Generate):
            self._reply(identity, wire.Result(rid, value))

    # ---- handlers --------------------------------------------------------------------
    async def _hello(self, _: bytes, request: wire.Hello) -> dict[str, Any]:
        ready, reason = self.engine.health()
        return {
            "pid": os.getpid(),
            "ready": ready,
            "reason": reason,
            "card": self.engine.model_card(),
            **self.engine.text_rules(),
        }

    async def _health(self, _: bytes, request: wire.Health) -> list[Any]:
        return list(self.engine.health())

    async def _score(self, _: bytes, request: wire.Score) -> list[Any]:
        if not request.top_k:
            return await self.engine.score(request.ids)
        logprobs, tops = await self.engine.score_top(request.ids, request.top_k)
        return [logprobs, [values.top(t) for t in tops]]

    async def _create_session(self, _: bytes, request: wire.CreateSession) -> list[Any]:
        ops = self.engine.ops()
        return values.step(
            await ops.create(request.ids, request.top_k, request.owner, request.cache)
        )

    async def _feed(self, _: bytes, request: wire.Feed) -> list[Any]:
        step = await self.engine.ops().feed(
            request.session_id, request.ids, request.top_k, request.owner
        )
        return values.step(step)

    async def _reset(self, _: bytes, request: wire.ResetSession) -> list[Any]:
        return values.info(await self.engine.ops().reset(request.session_id, request.owner))

    async def _describe(self, _: bytes, request: wire.DescribeSession) -> list[Any]:
        return values.info(await self.engine.ops().describe(request.session_id, request.owner))

    async def _delete(self, _: bytes, request: wire.DeleteSession) -> None:
        await self.engine.ops().remove(request.session_id, request.owner)

    async def _fork(self, _: bytes, request: wire.ForkSession) -> list[Any]:
        states = self.engine.states()
        return values.step(await states.fork(request.session_id, request.owner, request.top_k))

    async def _rewind(self, _: bytes, request: wire.RewindSession) -> list[Any]:
        step = await self.engine.states().rewind(
            request.session_id, request.owner, request.tokens, request.top_k
        )
        return values.step(step)

    async def _export(self, _: bytes, request: wire.ExportState) -> list[Any]:
        return list(await self.engine.states().export(request.session_id, request.owner))

    async def _import(self, _: bytes, request: wire.ImportState) -> list[Any]:
        states = self.engine.states()
        return values.step(await states.restore(request.state, request.owner, request.top_k))

    async def _attach(self, _: bytes, request: wire.AttachStream) -> list[Any]:
        ops = self.engine.ops()
        return values.info(await ops.attach(request.session_id, request.owner, request.cache))

    async def _detach(self, _: bytes, request: wire.DetachStream) -> None:
        self.engine.ops().detach(request.session_id)

    async def _flush_sessions(self, _: bytes, request: wire.FlushSessions) -> None:
        await self.engine.flush_sessions()

    async def _generate(self, identity: bytes, request: wire.Generate) -> None:
        params = values.generation_request(request.sampling)
        session = None
        if request.session_id is None:
            stream = await self.engine.generate_cached(request.ids, params)
        else:
            stream, session = await self.engine.ops().generate(
                request.session_id, request.owner, params
            )
        key = (identity, request.rid)
        self._streams[key] = stream
        start = None if session is None else session.position
        try:
            async for token in stream:
                position = None if start is None else start + token.index + 1
                top = None if token.top is None else values.top(token.top)
                message = wire.Token(
                    request.rid, token.token_id, token.index, position, token.logprob, top
                )
                self._reply(identity, message)
        finally:
            self._streams.pop(key, None)
        assert stream.finish_reason is not None
        position = None if session is None else session.position
        self._reply(identity, wire.Done(request.rid, stream.finish_reason.value, position))

    # ---- replying --------------------------------------------------------------------
    def _reply(self, identity: bytes, message: wire.Reply) -> None:
        self._outbox.setdefault(identity, []).append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for identity, messages in outbox.items():
            try:
                self._socket.send([identity, wire.ENCODER.encode(messages)])
            except zmq.ZMQError:
                log.exception("could not answer an API process")
