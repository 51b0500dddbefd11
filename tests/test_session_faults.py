"""Fault tests: real redis-server, real nginx (deploy/replicas/nginx.conf), real replicas.

Streams of sessions feed words through nginx while a replica is killed (-9), drained
(SIGTERM) or Redis restarts. Every acknowledged feed is checked against an
uninterrupted reference session; a client that loses its connection reconnects with
its ``session_id`` and continues from the position the server reports. Goal: no
acknowledged feed lost, every prediction identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from service.engine.core import EngineConfig
from tests.engine_harness import start_local
from tests.nginxproc import NGINX, running_nginx
from tests.redisproc import REDIS_SERVER, RedisProcess, running_redis
from tests.serverproc import ServerProcess, start_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        REDIS_SERVER is None or NGINX is None, reason="redis-server and nginx are needed"
    ),
]
VOCABULARY_WORDS = (
    "the company said it expects sales to rise sharply next year as investors are worried "
    "that federal reserve will raise interest rates again market prices fell on friday "
    "after report analysts bank shares new york stock exchange"
).split()
STREAMS = 8
WORDS_PER_STREAM = 40
TOLERANCE = 1e-4


@dataclass
class Cluster:
    redis: RedisProcess
    replicas: list[ServerProcess]
    nginx_port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}"


@dataclass
class Stats:
    acked: int = 0
    checked: int = 0
    mismatched: list[str] = field(default_factory=list)
    lost: int = 0
    max_lost: int = 0  # most feeds one stream lost at once
    resumed: int = 0
    applied_unacked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    finished: int = 0


@contextlib.contextmanager
def cluster(
    tmp_path: Path, tiny_checkpoint: Path, replicas: int = 2, **settings: str
) -> Iterator[Cluster]:
    started: list[ServerProcess] = []
    with running_redis(tmp_path) as redis:
        try:
            env = {
                "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
                "LSTM_SERVE_SESSION_STORE": redis.url,
                "LSTM_SERVE_THREADS": "1",
                "LSTM_SERVE_DRAIN_TIMEOUT_S": "5",
                **{f"LSTM_SERVE_{k.upper()}": v for k, v in settings.items()},
            }
            for i in range(replicas):
                started.append(start_server(env, tmp_path / f"replica-{i}.log"))
            with running_nginx([s.port for s in started], tmp_path) as port:
                yield Cluster(redis, started, port)
        finally:
            for server in started:
                server.stop(signal.SIGKILL)


def word_lists() -> list[list[str]]:
    rng = random.Random(7)
    return [[rng.choice(VOCABULARY_WORDS) for _ in range(WORDS_PER_STREAM)] for _ in range(STREAMS)]


async def references(checkpoint: Path, lists: list[list[str]]) -> list[list[dict[str, Any]]]:
    """Each list fed word by word into one uninterrupted in-process session."""
    engine = await start_local(EngineConfig(checkpoint, device="cpu"))
    try:
        out = []
        for words in lists:
            sid = (await engine.create_session("", 0)).session_id
            steps = [await engine.feed(sid, word, 5) for word in words]
            out.append(
                [
                    {
                        "position": s.position,
                        "logprob": s.logprob,
                        "predictions": [p.logprob for p in s.predictions],
                    }
                    for s in steps
                ]
            )
        return out
    finally:
        await engine.stop()


def same(answer: dict[str, Any], expected: dict[str, Any]) -> bool:
    return (
        answer["position"] == expected["position"]
        and abs(answer["logprob"] - expected["logprob"]) < TOLERANCE
        and all(
            abs(p["logprob"] - e) < TOLERANCE
            for p, e in zip(answer["predictions"], expected["predictions"], strict=True)
        )
    )


async def stream_client(
    url: str,
    words: list[str],
    expected: list[dict[str, Any]],
    stats: Stats,
    progress: asyncio.Event,
    pace_s: float,
) -> None:
    """Feed ``words`` one by one over ``WS /v1/stream``, resuming after any failure."""
    session_id: str | None = None
    done = 0  # words the session holds (acknowledged or found applied on resume)
    while done < len(words):
        query = f"?session_id={session_id}" if session_id else ""
        try:
            async with connect(f"{url}/v1/stream{query}", open_timeout=5, close_timeout=1) as ws:
                ready = json.loads(await ws.recv())
                if ready["type"] == "error":  # e.g. not_ready while a replica drains
                    stats.errors[ready["code"]] += 1
                    await asyncio.sleep(0.2)
                    continue
                if session_id is None:
                    session_id = ready["session_id"]
                else:
                    stats.resumed += 1
                position = ready["position"]
                if position == done + 1:  # the last feed was stored, its answer was lost
                    stats.applied_unacked += 1
                    done += 1
                elif position < done:  # acknowledged feeds lost: count, feed them again
                    stats.lost += done - position
                    stats.max_lost = max(stats.max_lost, done - position)
                    done = position
                elif position != done:
                    raise AssertionError(f"session resumed at {position}, expected {done}")
                while done < len(words):
                    await ws.send(json.dumps({"type": "feed", "text": words[done], "k": 5}))
                    answer = json.loads(await ws.recv())
                    if answer["type"] == "error":
                        stats.errors[answer["code"]] += 1
                        await asyncio.sleep(0.2)
                        break  # reconnect: the position then says whether it was applied
                    stats.acked += 1
                    stats.checked += 1
                    if not same(answer, expected[done]):
                        stats.mismatched.append(f"{session_id[:8]}@{done}")  # type: ignore[index]
                    done += 1
                    if done >= 5:
                        progress.set()
                    await asyncio.sleep(pace_s)
        except ConnectionClosed as closed:
            stats.closes[closed.rcvd.code if closed.rcvd else 1006] += 1
            await asyncio.sleep(0.1)
        except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as error:
            stats.errors[type(error).__name__] += 1
            await asyncio.sleep(0.2)
    stats.finished += 1


async def run_streams(
    cluster_: Cluster, checkpoint: Path, fault: Callable[[], Awaitable[None]], pace_s: float = 0.03
) -> Stats:
    lists = word_lists()
    expected = await references(checkpoint, lists)
    stats = Stats()
    progress = asyncio.Event()
    clients = [
        asyncio.create_task(stream_client(cluster_.ws_url, words, steps, stats, progress, pace_s))
        for words, steps in zip(lists, expected, strict=True)
    ]
    try:
        await asyncio.wait_for(progress.wait(), 60)
        await fault()
        await asyncio.wait_for(asyncio.gather(*clients), 120)
    finally:
        for client in clients:
            client.cancel()
    return stats


def busiest_replica(cluster_: Cluster) -> ServerProcess:
    """The replica with the most open streams (from its own /metrics)."""

    def streams(server: ServerProcess) -> float:
        text = httpx.get(server.url + "/metrics", timeout=5).text
        found = re.search(r"^lstm_serve_streams_open (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return max(cluster_.replicas, key=streams)


def check(stats: Stats, lost: int = 0) -> None:
    assert stats.finished == STREAMS, stats
    assert stats.lost == lost and not stats.mismatched, stats
    assert stats.acked + stats.applied_unacked == STREAMS * WORDS_PER_STREAM + lost, stats


def test_kill_9_mid_stream_resumes_elsewhere(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with cluster(tmp_path, tiny_checkpoint) as c:

        async def fault() -> None:
            busiest_replica(c).stop(signal.SIGKILL)

        stats = asyncio.run(run_streams(c, tiny_checkpoint, fault))
    check(stats)
    assert stats.resumed >= 1 and stats.closes, stats
    print("kill -9:", stats)


def test_sigterm_drains_and_hands_off(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with cluster(tmp_path, tiny_checkpoint) as c:
        victims: list[ServerProcess] = []

        async def fault() -> None:
            # Chosen once the streams are open (before, every replica has none), and at a
            # slower pace than the kill test: the streams must outlast the drain's store.
            victims.append(busiest_replica(c))
            victims[0].process.send_signal(signal.SIGTERM)

        stats = asyncio.run(run_streams(c, tiny_checkpoint, fault, pace_s=0.05))
        victim = victims[0]
        # uvicorn re-raises the signal after its clean shutdown: -SIGTERM is a clean exit.
        assert victim.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "drained in" in victim.log()
        assert "storing session states on drain failed" not in victim.log()
    check(stats)
    assert stats.closes[1012] >= 1 and stats.resumed >= 1, stats
    print("SIGTERM:", stats)


def test_redis_restart_never_silently_wrong(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with cluster(tmp_path, tiny_checkpoint) as c:

        async def fault() -> None:
            await asyncio.to_thread(c.redis.stop)  # graceful: the append-only file is complete
            await asyncio.sleep(1.0)
            await asyncio.to_thread(c.redis.start)

        stats = asyncio.run(run_streams(c, tiny_checkpoint, fault))
    check(stats)
    assert stats.errors["not_ready"] >= 1, stats  # the outage was seen, as a clear error
    print("redis restart:", stats)


def test_write_behind_loses_at_most_its_interval(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """kill -9 in write-behind mode: the loss is bounded by the flush interval, and every
    feed (including the lost ones, fed again) still gives the reference's predictions."""
    interval_s, pace_s = 0.05, 0.03
    with cluster(
        tmp_path,
        tiny_checkpoint,
        session_durability="write-behind",
        write_behind_interval_s=str(interval_s),
    ) as c:

        async def fault() -> None:
            busiest_replica(c).stop(signal.SIGKILL)

        stats = asyncio.run(run_streams(c, tiny_checkpoint, fault, pace_s=pace_s))
    check(stats, lost=stats.lost)
    # At most the feeds of one interval (+ one flush, + one in flight), with slack for a
    # loaded machine: far fewer than the 40 a stream sends.
    assert stats.max_lost <= 10, stats
    print("write-behind kill -9:", stats)


def test_http_sessions_resume_on_any_replica_but_not_another_model(
    tmp_path: Path, tiny_checkpoint: Path, ptb_vocabulary: Any
) -> None:
    from tests.conftest import make_checkpoint

    other_model = make_checkpoint(tmp_path / "other", ptb_vocabulary, seed=1)
    with cluster(tmp_path, tiny_checkpoint) as c:
        a, b = c.replicas
        created = httpx.post(a.url + "/v1/sessions", json={"text": "the company"}).json()
        sid = created["session_id"]
        on_a = httpx.post(f"{a.url}/v1/sessions/{sid}/feed", json={"text": "said"}).json()
        info = httpx.get(f"{b.url}/v1/sessions/{sid}").json()  # b resumes it from Redis
        assert info["position"] == 3
        on_b = httpx.post(f"{b.url}/v1/sessions/{sid}/feed", json={"text": "it"}).json()
        # a's copy is older than the store's now: it notices and catches up.
        assert httpx.get(f"{a.url}/v1/sessions/{sid}").json()["position"] == 4
        on_a2 = httpx.post(f"{a.url}/v1/sessions/{sid}/feed", json={"text": "expects"}).json()
        assert (on_a["position"], on_b["position"], on_a2["position"]) == (3, 4, 5)
        reference = httpx.post(a.url + "/v1/sessions", json={"text": "the company said it"}).json()[
            "session_id"
        ]
        expected = httpx.post(
            f"{a.url}/v1/sessions/{reference}/feed", json={"text": "expects"}
        ).json()
        assert abs(on_a2["logprob"] - expected["logprob"]) < TOLERANCE
        env = {
            "LSTM_SERVE_MODEL_PATH": str(other_model),
            "LSTM_SERVE_SESSION_STORE": c.redis.url,
            "LSTM_SERVE_THREADS": "1",
        }
        other = start_server(env, tmp_path / "other.log")
        try:
            refused = httpx.post(f"{other.url}/v1/sessions/{sid}/feed", json={"text": "x"})
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "session_incompatible"
        finally:
            other.stop(signal.SIGKILL)
        httpx.delete(f"{b.url}/v1/sessions/{sid}").raise_for_status()
        assert httpx.get(f"{a.url}/v1/sessions/{sid}").status_code == 404
