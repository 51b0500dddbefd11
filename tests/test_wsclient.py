"""The load generator's lean WebSocket client against a real server: frames both ways
(short, 16-bit and 64-bit lengths), pipelining, errors and a refused stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.loadgen.wsclient import WsError, WsStream, client_frame


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
