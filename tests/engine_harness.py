"""An engine and its client in one process, over the real channel (ZeroMQ ``ipc://``).

Engine tests drive the same path an API process does — text in the client, ids over the
wire, the engine's batching behind it — and may still look at the engine's insides.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from service.engine.client import EngineClient
from service.engine.core import Engine, EngineConfig
from service.engine.server import EngineServer


class LocalEngine:
    """Text-level calls go to ``client``; ``core``, ``worker``, ``runner``, ``metrics``
    and ``health()`` are the engine's own."""

    def __init__(self, core: Engine, client: EngineClient, server: EngineServer) -> None:
        self.core = core
        self.client = client
        self.server = server
        self.stopped = False
        self.predict = client.predict
        self.score = client.score
        self.generate = client.generate
        self.create_session = client.create_session
        self.feed = client.feed
        self.reset_session = client.reset_session
        self.describe_session = client.describe_session
        self.remove_session = client.remove_session
        self.generate_in_session = client.generate_in_session
        self.attach_stream = client.attach_stream
        self.detach_stream = client.detach_stream

    @property
    def worker(self) -> Any:
        return self.core.worker

    @property
    def runner(self) -> Any:
        return self.core.runner

    @property
    def metrics(self) -> Any:
        return self.core.metrics

    @property
    def sessions(self) -> Any:
        return self.core.sessions

    def health(self) -> tuple[bool, str]:
        return self.core.health()

    async def stop(self) -> None:
        """Like the engine process on SIGTERM: store the sessions, then stop (once)."""
        if self.stopped:
            return
        self.stopped = True
        await self.client.close()
        await self.core.stop()
        await self.server.stop()


async def start_local(config: EngineConfig) -> LocalEngine:
    """A started engine with its server and a connected client (``stop()`` them)."""
    address = f"ipc://{tempfile.mkdtemp(prefix='engine-test-')}/e.sock"
    engine, server, client = await started(config, address)
    return LocalEngine(engine, client, server)


async def started(config: EngineConfig, address: str) -> tuple[Engine, EngineServer, EngineClient]:
    engine = Engine(config)
    await engine.start()
    server = EngineServer(engine, address)
    server.start()
    client = EngineClient(address, config.request_timeout_s)
    await client.connect()
    return engine, server, client


def run_engine(
    checkpoint: Path, scenario: Callable[[LocalEngine], Awaitable[Any]], **config: Any
) -> Any:
    """Run ``scenario`` against a fresh engine (settings ``config``) and its client."""

    async def main() -> Any:
        local = await start_local(EngineConfig(checkpoint, device="cpu", **config))
        try:
            return await scenario(local)
        finally:
            await local.stop()

    return asyncio.run(main())
