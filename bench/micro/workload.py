"""What the engine benchmarks send, and the three ways to reach an engine.

Tokenisation happens in the API process, so "the engine alone" gets word ids: the bodies
are tokenised once up front with the checkpoint's own tokenizer. ``via`` picks the path:

- ``engine``: ``Engine`` calls in this process (ids), what the engine process does per
  request minus the channel;
- ``channel``: ``Engine`` + ``EngineServer`` + ``EngineClient`` in this process over
  ZeroMQ ``ipc://`` (text in the client, as an API process sends it; one interpreter lock);
- ``process``: a real engine process (the supervisor's ``run_engine``) and a client here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.http.bodies import read_texts
from bench.loadgen.stats import latency_summary_ms
from bench.loadgen.texts import SENTENCES, TextSource
from models.checkpoint import Checkpoint
from models.tokenizer import Tokenizer
from service.engine.client import EngineClient
from service.engine.core import Engine, EngineConfig
from service.engine.server import EngineServer

VIAS = ("engine", "channel", "process")


@dataclass(frozen=True)
class Workload:
    """The same requests as text (for a client) and as ids (for the engine)."""

    texts: list[str]
    ids: list[list[int]]


LOADGEN_FEEDS = 20_000  # words of the load generator's text stream, fed round-robin


def feed_words(checkpoint: Checkpoint, work: Workload, words: str) -> Workload:
    """What session feeds send, one entry per feed: ``bodies``, one token of the bodies
    each; ``loadgen``, the words ``lstm-serve-bench feed``/``ws`` sends
    (``TextSource.next_word``), about 8 % of which are two tokens (a clitic, or a
    sentence's last word with its ``<eos>``) that cost the engine a second decoder pass."""
    if words == "bodies":
        ids = [ids[j : j + 1] for ids in work.ids for j in range(len(ids))]
        return Workload([w for t in work.texts for w in t.split()], ids)
    tokenizer = Tokenizer(checkpoint.normalizer, checkpoint.vocabulary)
    source = TextSource(0)
    texts = [source.next_word() for _ in range(LOADGEN_FEEDS)]
    return Workload(texts, [tokenizer.encode(text)[1] for text in texts])


def workload(checkpoint: Checkpoint, bodies: Path | None) -> Workload:
    texts = read_texts(bodies) if bodies else list(SENTENCES)
    tokenizer = Tokenizer(checkpoint.normalizer, checkpoint.vocabulary)
    return Workload(texts, [tokenizer.encode(text)[1] for text in texts])


async def closed_loop(
    call: Callable[[int], Awaitable[Any]], concurrency: int, duration_s: float
) -> dict[str, Any]:
    """``concurrency`` callers, each calling ``call(i)`` back to back for ``duration_s``."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def user(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        **latency_summary_ms(latencies),
    }


@contextlib.asynccontextmanager
async def local_engine(config: EngineConfig) -> AsyncIterator[Engine]:
    engine = Engine(config)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@contextlib.asynccontextmanager
async def engine_client(config: EngineConfig, via: str) -> AsyncIterator[EngineClient]:
    """A connected client of an engine served in this process or in its own."""
    address = f"ipc://{tempfile.mkdtemp(prefix='engine-bench-')}/e.sock"
    if via == "channel":
        async with local_engine(config) as engine:
            server = EngineServer(engine, address)
            server.start()
            try:
                async with _client(address, config) as client:
                    yield client
            finally:
                await server.stop()
        return
    process = _start_engine_process(config, address)
    try:
        async with _client(address, config) as client:
            yield client
    finally:
        process.terminate()
        process.join(30)


@contextlib.asynccontextmanager
async def _client(address: str, config: EngineConfig) -> AsyncIterator[EngineClient]:
    client = EngineClient(address, config.request_timeout_s)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def _start_engine_process(config: EngineConfig, address: str) -> multiprocessing.Process:
    """The supervisor's own engine process (``service.processes.run_engine``), ready."""
    from service.processes import run_engine
    from service.settings import Settings

    fields = Settings(
        model_path=config.model_path,
        device=config.device,  # type: ignore[arg-type]
        threads=config.threads,
        max_batch_size=config.max_batch_size,
        max_queue=config.max_queue,
        max_sessions=config.max_sessions,
        log_level="warning",
    ).model_dump()
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=run_engine, args=(fields, address, send))
    process.start()
    status, detail = receive.recv()
    if status != "ready":
        process.join(10)
        raise RuntimeError(f"engine process did not start: {detail}")
    return process
