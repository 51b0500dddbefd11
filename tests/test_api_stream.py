"""``WS /v1/stream`` against a real server: the whole protocol, resume, busy, cancel."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from models.detokenize import detokenize

pytestmark = pytest.mark.integration


def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=20))


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def closed_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=20)
    return info.value.rcvd.code if info.value.rcvd else None


def test_feed_generate_reset_close(server, client: httpx.Client) -> None:
    with connect(f"{server.ws_url}/v1/stream") as ws:
        ready = recv(ws)
        assert ready["type"] == "ready" and ready["position"] == 0
        assert ready["model"] == client.get("/v1/models").json()["id"]
        sid = ready["session_id"]
        send(ws, type="feed", text="the company said", k=3, id=7)
        answer = recv(ws)
        assert answer["type"] == "predictions" and answer["id"] == 7
        assert answer["position"] == 3 and answer["tokens"] == ["the", "company", "said"]
        assert len(answer["predictions"]) == 3 and answer["logprob"] < 0
        send(ws, type="generate", max_tokens=4, temperature=0, stop_at_eos=False, id="g")
        tokens = [recv(ws) for _ in range(4)]
        assert [t["type"] for t in tokens] == ["token"] * 4
        assert [t["position"] for t in tokens] == [4, 5, 6, 7]
        assert all(t["id"] == "g" for t in tokens)
        done = recv(ws)
        assert done["type"] == "done" and done["finish_reason"] == "length"
        assert done["text"] == detokenize([t["word"] for t in tokens])
        assert client.get(f"/v1/sessions/{sid}").json()["position"] == 7
        send(ws, type="reset", id=1)
        assert recv(ws) == {
            "type": "ready",
            "session_id": sid,
            "position": 0,
            "model": ready["model"],
            "id": 1,
        }
        send(ws, type="close")
        assert closed_code(ws) == 1000
    assert client.get(f"/v1/sessions/{sid}").status_code == 404


def test_stream_equals_http_session(server, client: httpx.Client) -> None:
    words = ["investors", "are", "worried", "that", "the", "federal", "reserve", "will"]
    sid = client.post("/v1/sessions", json={}).json()["session_id"]
    with connect(f"{server.ws_url}/v1/stream") as ws:
        recv(ws)
        for word in words:
            send(ws, type="feed", text=word, k=5)
            streamed = recv(ws)
            fed = client.post(f"/v1/sessions/{sid}/feed", json={"text": word, "k": 5}).json()
            assert abs(streamed["logprob"] - fed["logprob"]) < 1e-5
            assert [p["word"] for p in streamed["predictions"]] == [
                p["word"] for p in fed["predictions"]
            ]


def test_bad_messages_keep_the_connection(server) -> None:
    with connect(f"{server.ws_url}/v1/stream") as ws:
        recv(ws)
        for raw in (
            "not json",
            json.dumps({"type": "dance"}),
            json.dumps([1, 2]),
            json.dumps({"type": "feed", "text": 5, "id": 9}),
            json.dumps({"type": "feed", "text": "a", "k": 0}),
            json.dumps({"type": "generate", "max_tokens": True}),
        ):
            ws.send(raw)
            error = recv(ws)
            assert error["type"] == "error" and error["code"] == "invalid_request", error
            assert error["message"]
        send(ws, type="feed", text="x" * 2500)
        assert recv(ws)["code"] == "payload_too_large"
        ws.send(json.dumps({"type": "feed", "text": "a" * 6000}))
        assert recv(ws)["code"] == "payload_too_large"
        send(ws, type="feed", text="still open", id="ok")
        assert recv(ws)["type"] == "predictions"


def test_error_id_is_echoed(server) -> None:
    with connect(f"{server.ws_url}/v1/stream") as ws:
        recv(ws)
        send(ws, type="feed", text=5, id="bad-1")
        assert recv(ws)["id"] == "bad-1"


def test_resume_after_disconnect(server, client: httpx.Client) -> None:
    with connect(f"{server.ws_url}/v1/stream") as ws:
        sid = recv(ws)["session_id"]
        send(ws, type="feed", text="the bank said")
        first = recv(ws)
    with connect(f"{server.ws_url}/v1/stream?session_id={sid}") as ws:
        ready = recv(ws)
        assert ready["session_id"] == sid and ready["position"] == first["position"] == 3
        send(ws, type="feed", text="its profit")
        resumed = recv(ws)
    reference = client.post("/v1/sessions", json={"text": "the bank said"}).json()["session_id"]
    fed = client.post(f"/v1/sessions/{reference}/feed", json={"text": "its profit"}).json()
    assert abs(fed["logprob"] - resumed["logprob"]) < 1e-5
    assert resumed["position"] == 5


def test_one_live_stream_per_session(server) -> None:
    with connect(f"{server.ws_url}/v1/stream") as first:
        sid = recv(first)["session_id"]
        with connect(f"{server.ws_url}/v1/stream?session_id={sid}") as second:
            error = recv(second)
            assert error["type"] == "error" and error["code"] == "session_busy"
            assert closed_code(second) == 1008
    # The first stream is gone, so the session can be attached again.
    with connect(f"{server.ws_url}/v1/stream?session_id={sid}") as again:
        assert recv(again)["type"] == "ready"


def test_unknown_session_is_refused(server) -> None:
    with connect(f"{server.ws_url}/v1/stream?session_id=nope") as ws:
        error = recv(ws)
        assert error["code"] == "session_not_found"
        assert closed_code(ws) == 1008


def test_cancel_stops_a_generation(server, client: httpx.Client) -> None:
    with connect(f"{server.ws_url}/v1/stream") as ws:
        sid = recv(ws)["session_id"]
        send(ws, type="generate", max_tokens=200, stop_at_eos=False, id="long")
        assert recv(ws)["type"] == "token"
        send(ws, type="cancel")
        message = recv(ws)
        while message["type"] == "token":
            message = recv(ws)
        assert message["type"] == "done" and message["finish_reason"] == "cancelled"
        assert message["id"] == "long"
        position = client.get(f"/v1/sessions/{sid}").json()["position"]
        assert 1 <= position < 200 and position == message["position"]
        send(ws, type="feed", text="after")
        assert recv(ws)["position"] == position + 1


def test_pipelined_messages_are_answered_in_order(server) -> None:
    """Feeds sent without waiting, and messages queued behind a running generation
    (including a bad one and a close), are answered strictly in the order sent."""
    with connect(f"{server.ws_url}/v1/stream") as ws:
        recv(ws)
        for i in range(5):
            send(ws, type="feed", text="the market", k=2, id=i)
        answers = [recv(ws) for _ in range(5)]
        assert [a["id"] for a in answers] == [0, 1, 2, 3, 4]
        assert [a["position"] for a in answers] == [2, 4, 6, 8, 10]
        send(ws, type="generate", max_tokens=6, temperature=0, stop_at_eos=False, id="g")
        send(ws, type="feed", text="after", id="f")
        ws.send("not json")
        send(ws, type="reset", id="r")
        send(ws, type="close")
        kinds = []
        while True:
            try:
                message = recv(ws)
            except ConnectionClosed:
                break
            kinds.append((message["type"], message.get("id")))
        assert kinds == [("token", "g")] * 6 + [
            ("done", "g"),
            ("predictions", "f"),
            ("error", None),
            ("ready", "r"),
        ]


def test_an_id_past_64_bits_is_refused_not_fatal(server) -> None:
    """Such a number parses as a double (as in JavaScript), not an id: a clear error."""
    with connect(f"{server.ws_url}/v1/stream") as ws:
        recv(ws)
        ws.send('{"type": "feed", "text": "the", "id": 123456789012345678901234567890}')
        answer = recv(ws)
        assert answer["type"] == "error" and answer["code"] == "invalid_request"
        send(ws, type="feed", text="still open", id="ok")
        assert recv(ws)["id"] == "ok"
