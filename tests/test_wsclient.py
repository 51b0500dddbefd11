"""The load generator's lean WebSocket client against a real server: frames both ways
(short, 16-bit and 64-bit lengths), pipelining, errors, a refused stream, and open-loop
feeds sent without a task each."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from bench.loadgen.config import RunConfig
from bench.loadgen.context import Context
from bench.loadgen.stats import Recorder
from bench.loadgen.streaming import DirectFeeds
from bench.loadgen.texts import TextSource
from bench.loadgen.wsclient import WsError, WsStream
from bench.loadgen.wsconnection import client_frame


def test_client_frames_are_masked_and_sized() -> None:
    for size, header in ((5, 2), (300, 4), (70_000, 10)):
        frame = client_frame(0x1, b"a" * size)
        assert frame[0] == 0x81 and frame[1] & 0x80  # final text frame, masked
        key = frame[header : header + 4]
        body = frame[header + 4 :]
        assert len(body) == size
        assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == b"a" * size


@pytest.mark.integration
def test_stream_over_the_lean_client(server: Any) -> None:
    url = server.url.replace("http://", "ws://") + "/v1/stream"

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], str, str]:
        stream = await WsStream.open(url, {}, 10)
        assert stream.session_id and stream.alive
        words = ["the", "company", "said", "it", "expects"]
        answers = await asyncio.gather(
            *(stream.request({"type": "feed", "text": w, "k": 3}) for w in words)
        )
        long = await stream.request({"type": "feed", "text": " ".join(["shares"] * 60)}, 10)
        try:
            await stream.request({"type": "feed", "text": "x", "k": -1})
            code = "none"
        except WsError as error:
            code = error.code
        await stream.close()
        try:
            await WsStream.open(url + "?session_id=" + "n" * 32, {}, 10)
            refused = "none"
        except WsError as error:
            refused = error.code
        return answers, long, code, refused

    answers, long, code, refused = asyncio.run(scenario())
    assert [a["position"] for a in answers] == [1, 2, 3, 4, 5]  # pipelined, in order
    assert all(len(a["predictions"]) == 3 for a in answers)
    assert long["position"] == 65
    assert code == "invalid_request"
    assert refused == "session_not_found"


@pytest.mark.integration
def test_open_loop_feeds_sent_without_a_task_are_all_recorded(server: Any) -> None:
    """``DirectFeeds``: each feed is recorded once from its stream's callback (answers,
    errors, a sweep past the deadline, and the feeds still out when the run ends)."""
    url = server.url.replace("http://", "ws://") + "/v1/stream"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
        ctx = Context(
            RunConfig(scenario="ws", url=server.url, requests=40), None, Recorder(), TextSource(1)
        )  # type: ignore[arg-type]
        ctx.t0 = time.perf_counter()
        ctx.streams = [await WsStream.open(url, {}, 10) for _ in range(3)]
        ctx.locks = [asyncio.Lock() for _ in range(3)]
        direct = DirectFeeds(ctx)
        sent = sum(direct.send(i % 3, time.perf_counter()) for i in range(30))
        await direct.finish(time.perf_counter() + 10)
        answered = ctx.recorder.to_raw()["ops"]["ws_feed"]
        ctx.recorder = Recorder()
        ctx.config = replace(ctx.config, timeout_s=0.0)  # every feed is past its deadline
        for i in range(6):
            direct.send(i % 3, time.perf_counter())
        direct.sweep()
        timed_out = ctx.recorder.to_raw()["ops"]["ws_feed"]
        ctx.recorder = Recorder()
        ctx.config = replace(ctx.config, timeout_s=30.0)
        direct.send(0, time.perf_counter())
        await direct.finish(time.perf_counter())  # the run ends before the answer
        unfinished = ctx.recorder.to_raw()["ops"]["ws_feed"]
        for stream in ctx.streams:
            assert stream is not None
            await stream.close()
        return answered, timed_out, unfinished, sent + direct.in_flight

    answered, timed_out, unfinished, sent = asyncio.run(scenario())
    assert len(answered["latencies_s"]) == 30 and not answered["errors_by_code"]
    assert timed_out["errors_by_code"] == {"client:timeout": 6} and not timed_out["latencies_s"]
    assert unfinished["errors_by_code"] == {"client:unfinished": 1}
    assert sent == 30  # and nothing is left counted in flight
