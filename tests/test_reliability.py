"""Regression tests for #16 (what a hostile or unlucky client found), black-box.

Every test talks to a real ``python -m service`` over HTTP, WebSocket or a raw socket;
item 1 also freezes a real ``redis-server`` with SIGSTOP. Nothing is mocked. Items 3, 4
and 9 (normalisation, the word cache, the vocabulary round trip) are unit-tested in
``test_normalizer.py`` and ``test_tokenizer.py``; item 11 is ``deploy/smoke-docker``.

Every test here failed on the code before #16 was fixed (checked when they were written).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from models.vocabulary import Vocabulary
from tests.redisproc import REDIS_SERVER, running_redis
from tests.serverproc import ServerProcess, start_server

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 30.0


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The ``error`` object of a contract-shaped error answer with this ``status``."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    return contract_error(response.json())


def contract_error(body: Any) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}``: the one shape of every error."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    return error


def read_response(data: bytes, closed: bool = False) -> tuple[bytes, bytes] | None:
    """Headers and body once ``data`` holds a whole HTTP response (by its Content-Length,
    or all that came before the server closed), else None."""
    if b"\r\n\r\n" not in data:
        return None
    head, body = data.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return (head, body) if len(body) >= int(value) else None
    return (head, body) if closed else None


def http_request(path: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def http_response(sock: socket.socket, timeout_s: float) -> tuple[int, bytes]:
    """Status and body of the one response on ``sock``."""
    sock.settimeout(timeout_s)
    data = b""
    while (response := read_response(data)) is None:
        chunk = sock.recv(65536)
        if not chunk:
            response = read_response(data, closed=True)
            assert response is not None, f"closed before a whole response: {data[:300]!r}"
            break
        data += chunk
    return int(response[0].split(b" ", 2)[1]), response[1]


@contextlib.contextmanager
def serving(
    tiny_checkpoint: Path, directory: Path, name: str, **settings: str
) -> Iterator[ServerProcess]:
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_THREADS": "1"}
    env.update({f"LSTM_SERVE_{key.upper()}": value for key, value in settings.items()})
    server = start_server(env, directory / f"{name}.log")
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def plain_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    with serving(tiny_checkpoint, tmp_path_factory.mktemp("plain"), "server") as server:
        yield server


@pytest.fixture(scope="module")
def deadline_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 2 s request deadline and a 50 kB WebSocket message limit."""
    with serving(
        tiny_checkpoint,
        tmp_path_factory.mktemp("deadline"),
        "server",
        request_timeout_s="2",
        max_ws_message_bytes="50000",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def ttl_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """Sessions expire after 1 s idle; the sweeper would not run before 30 s."""
    with serving(
        tiny_checkpoint,
        tmp_path_factory.mktemp("ttl"),
        "server",
        session_ttl_s="1",
        session_sweep_interval_s="30",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    with serving(
        tiny_checkpoint, tmp_path_factory.mktemp("keyed"), "server", api_keys="key-a"
    ) as server:
        yield server


def client_for(server: ServerProcess, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S, headers=headers)


def new_session(client: httpx.Client) -> str:
    response = client.post("/v1/sessions", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


# --- item 1: a frozen Redis (sync durability) ----------------------------------------------

REDIS_REQUEST_TIMEOUT_S = 3.0


@dataclass
class FrozenRedisRun:
    """What one session saw around a Redis frozen with SIGSTOP while it was fed."""

    acked_tokens: int = 0  # tokens of the feeds answered 200
    frozen_feeds: list[tuple[int | None, float]] = field(default_factory=list)  # status, s
    not_ready_after_s: float | None = None  # first /readyz 503 after the freeze
    position_after_thaw: int | None = None
    position_after_restart: int | None = None


def feed_tokens(
    client: httpx.Client, sid: str, text: str, timeout_s: float = CLIENT_TIMEOUT_S
) -> tuple[int | None, int]:
    """Feed ``text``; the status (None: no answer in time) and the tokens it acknowledged."""
    try:
        response = client.post(
            f"/v1/sessions/{sid}/feed", json={"text": text, "k": 1}, timeout=timeout_s
        )
    except httpx.TimeoutException:
        return None, 0
    if response.status_code == 200:
        return 200, len(response.json()["tokens"])
    error_of(response, response.status_code)
    return response.status_code, 0


def watch_readiness(url: str, until: threading.Event, run: FrozenRedisRun) -> None:
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=2) as client:
        while not until.is_set() and run.not_ready_after_s is None:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/readyz").status_code == 503:
                    run.not_ready_after_s = time.monotonic() - start
            until.wait(0.2)


def position(server: ServerProcess, sid: str) -> int:
    with client_for(server) as client:
        response = client.get(f"/v1/sessions/{sid}")
        assert response.status_code == 200, response.text
        return int(response.json()["position"])


@pytest.fixture(scope="module")
def frozen_redis_run(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> FrozenRedisRun:
    """One session: a feed, Redis frozen during one more (and a /readyz watch), thawed,
    then the server killed (-9) and restarted on the same Redis. About 15-30 s."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is needed")
    directory = tmp_path_factory.mktemp("frozen-redis")
    run = FrozenRedisRun()
    with running_redis(directory) as redis:
        assert redis.process is not None
        env = {
            "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
            "LSTM_SERVE_THREADS": "1",
            "LSTM_SERVE_SESSION_STORE": redis.url,
            "LSTM_SERVE_SESSION_DURABILITY": "sync",
            "LSTM_SERVE_REQUEST_TIMEOUT_S": str(REDIS_REQUEST_TIMEOUT_S),
        }
        server = start_server(env, directory / "server.log")
        try:
            with client_for(server) as client:
                sid = new_session(client)
                status, tokens = feed_tokens(client, sid, "the company said")
                assert status == 200
                run.acked_tokens += tokens
                thawed = threading.Event()
                watcher = threading.Thread(
                    target=watch_readiness, args=(server.url, thawed, run), daemon=True
                )
                redis.process.send_signal(signal.SIGSTOP)
                try:
                    watcher.start()
                    start = time.monotonic()
                    status, tokens = feed_tokens(
                        client, sid, "it expects", timeout_s=REDIS_REQUEST_TIMEOUT_S + 9
                    )
                    run.frozen_feeds.append((status, time.monotonic() - start))
                    run.acked_tokens += tokens
                    watcher.join(timeout=max(0.0, 6.0 - (time.monotonic() - start)))
                finally:
                    thawed.set()
                    redis.process.send_signal(signal.SIGCONT)
                watcher.join(timeout=5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            time.sleep(1.0)  # whatever the frozen Redis held back has landed by now
            run.position_after_thaw = position(server, sid)
            server.stop(signal.SIGKILL)
            server = start_server(env, directory / "restarted.log")
            run.position_after_restart = position(server, sid)
        finally:
            server.stop(signal.SIGKILL)
    return run


def test_feeds_answered_with_an_error_were_not_applied(frozen_redis_run: FrozenRedisRun) -> None:
    """A client that retries a feed answered with an error must not get its words twice."""
    run = frozen_redis_run
    assert run.frozen_feeds, "no feed was sent while Redis was frozen"
    assert run.position_after_thaw == run.acked_tokens, run
    assert run.position_after_restart == run.acked_tokens, run


def test_frozen_redis_does_not_hold_a_feed_past_its_deadline(
    frozen_redis_run: FrozenRedisRun,
) -> None:
    for status, elapsed_s in frozen_redis_run.frozen_feeds:
        assert status is not None, "no answer at all"
        assert elapsed_s <= REDIS_REQUEST_TIMEOUT_S + 1.0, frozen_redis_run.frozen_feeds


def test_readiness_says_503_while_redis_is_frozen(frozen_redis_run: FrozenRedisRun) -> None:
    assert frozen_redis_run.not_ready_after_s is not None, "/readyz stayed 200"
    assert frozen_redis_run.not_ready_after_s <= 5.0, frozen_redis_run


# --- item 2: feeds to one session apply in arrival order ------------------------------------


def unique_words(count: int) -> list[str]:
    """Distinct letter-only words (never cached, never in the vocabulary)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = []
    for index in range(count):
        word = ""
        while True:
            index, digit = divmod(index, 26)
            word += letters[digit]
            if index == 0:
                break
        words.append("zq" + word)
    return words


def test_a_short_feed_does_not_overtake_a_long_one(plain_server: ServerProcess) -> None:
    """A long feed, then 50 ms later a short one on another connection: applied in order.

    Both connections are open before either request is sent, and the long request is
    wholly written before the short one starts, so "arrived first" is not up to the
    client's thread scheduling.
    """
    long_text = " ".join(unique_words(8_500))  # ~50k characters, 8,500 tokens
    assert 48_000 < len(long_text) < 100_000
    with client_for(plain_server) as client:
        sid = new_session(client)
    path = f"/v1/sessions/{sid}/feed"
    address = ("127.0.0.1", plain_server.port)
    with (
        socket.create_connection(address, timeout=10) as first,
        socket.create_connection(address, timeout=10) as second,
    ):
        first.sendall(http_request(path, {"text": long_text, "k": 1}))
        time.sleep(0.05)
        second.sendall(http_request(path, {"text": "the", "k": 1}))
        long_status, long_body = http_response(first, CLIENT_TIMEOUT_S)
        short_status, short_body = http_response(second, CLIENT_TIMEOUT_S)
    assert long_status == 200, long_body[:300]
    assert short_status == 200, short_body[:300]
    long_position = json.loads(long_body)["position"]
    short_position = json.loads(short_body)["position"]
    assert short_position == long_position + 1, (long_position, short_position)


# --- item 5: a slow body counts against the request deadline --------------------------------


def test_slow_body_gets_a_timeout_answer_and_a_closed_connection(
    deadline_server: ServerProcess,
) -> None:
    """Headers, then one body byte every 0.5 s: answered 408/504 within the deadline + 2 s."""
    body = json.dumps({"text": "the company said", "k": 1}).ljust(100).encode()
    assert len(body) == 100
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", deadline_server.port), timeout=5) as sock:
        sock.sendall(head)
        start = time.monotonic()
        sock.settimeout(0.5)
        data, sent, response = b"", 0, None
        while response is None and time.monotonic() - start < 8.0:
            if sent < len(body):
                with contextlib.suppress(OSError):
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                response = read_response(data, closed=True)
                break
            data += chunk
            response = read_response(data)
        elapsed_s = time.monotonic() - start
        assert response is not None, f"no answer after {elapsed_s:.1f}s ({sent} bytes sent)"
        status_line = response[0].split(b"\r\n", 1)[0].decode()
        assert status_line.split()[1] in ("408", "504"), status_line
        contract_error(json.loads(response[1]))
        assert elapsed_s <= 2.0 + 2.0, elapsed_s
        assert sent < len(body)  # answered before the body was complete
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b"", "the connection stays open"


# --- item 6: WebSocket messages the contract answers with an error ------------------------


def receive(ws: ClientConnection, timeout_s: float = 20) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout_s))


def still_feeds(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "feed", "text": "the company", "k": 1}))
    answer = receive(ws)
    assert answer["type"] == "predictions", answer
    assert answer["tokens"] == ["the", "company"], answer


def test_binary_frame_gets_an_error_and_the_stream_stays_open(
    deadline_server: ServerProcess,
) -> None:
    with connect(f"{deadline_server.ws_url}/v1/stream", open_timeout=10) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "feed", "text": "the", "k": 1}).encode())
        answer = receive(ws)
        assert answer["type"] == "error" and answer["code"] == "invalid_request", answer
        still_feeds(ws)


def test_message_limit_counts_utf8_bytes(deadline_server: ServerProcess) -> None:
    """30,000 'é' are 30,000 characters (under 50 kB) but 60,000 UTF-8 bytes (over it)."""
    message = json.dumps({"type": "feed", "text": "é" * 30_000, "k": 1}, ensure_ascii=False)
    assert len(message) < 50_000 < len(message.encode())
    with connect(f"{deadline_server.ws_url}/v1/stream", open_timeout=10) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(message)
        answer = receive(ws)
        assert answer["type"] == "error" and answer["code"] == "payload_too_large", {
            key: answer.get(key) for key in ("type", "code", "message", "position")
        }
        still_feeds(ws)


def test_message_under_the_limit_in_bytes_is_fed(deadline_server: ServerProcess) -> None:
    """The control: 20,000 'é' (40,000 bytes) are under the 50 kB limit."""
    message = json.dumps({"type": "feed", "text": "é" * 20_000, "k": 1}, ensure_ascii=False)
    with connect(f"{deadline_server.ws_url}/v1/stream", open_timeout=10) as ws:
        assert receive(ws)["type"] == "ready"
        ws.send(message)
        answer = receive(ws)
        assert answer["type"] == "predictions" and answer["tokens"] == ["<unk>"], answer


def test_message_over_the_frame_limit_says_payload_too_large(
    deadline_server: ServerProcess,
) -> None:
    """3 MB: an error message, or a close 1009 whose reason names ``payload_too_large``."""
    message = json.dumps({"type": "feed", "text": "the " * 750_000, "k": 1})
    with connect(f"{deadline_server.ws_url}/v1/stream", open_timeout=10) as ws:
        assert receive(ws)["type"] == "ready"
        with contextlib.suppress(ConnectionClosed):
            ws.send(message)
        try:
            answer = receive(ws)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            reason = closed.rcvd.reason if closed.rcvd else ""
            assert code == 1009 and "payload_too_large" in reason, (code, reason)
        else:
            assert answer["type"] == "error" and answer["code"] == "payload_too_large", answer


def test_overlong_session_id_is_refused_promptly(deadline_server: ServerProcess) -> None:
    """A 9,000-character session_id: an HTTP refusal, or an error message and close 1008."""
    url = f"{deadline_server.ws_url}/v1/stream?session_id={'a' * 9_000}"
    start = time.monotonic()
    try:
        with connect(url, open_timeout=5) as ws:
            answer = receive(ws, timeout_s=5)
            assert answer["type"] == "error", answer
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    except InvalidStatus as refused:
        assert 400 <= refused.response.status_code < 500, refused.response.status_code
    except TimeoutError:
        pytest.fail(f"no answer to the upgrade within {time.monotonic() - start:.1f}s")


# --- item 7: a session past its TTL is gone at once ------------------------------------------


def test_expired_session_is_not_served(ttl_server: ServerProcess) -> None:
    with client_for(ttl_server) as client:
        sid = new_session(client)
        time.sleep(1.5)
        error = error_of(client.get(f"/v1/sessions/{sid}"), 404)
        assert error["code"] == "session_not_found"


def test_expired_session_is_not_revived_by_a_feed(ttl_server: ServerProcess) -> None:
    with client_for(ttl_server) as client:
        sid = new_session(client)
        time.sleep(1.5)
        response = client.post(f"/v1/sessions/{sid}/feed", json={"text": "the", "k": 1})
        assert error_of(response, 404)["code"] == "session_not_found"


def test_session_within_its_ttl_is_served(ttl_server: ServerProcess) -> None:
    """The control: a session fed every 0.1 s outlives its 1 s TTL."""
    with client_for(ttl_server) as client:
        sid = new_session(client)
        for _ in range(12):
            time.sleep(0.1)
            response = client.post(f"/v1/sessions/{sid}/feed", json={"text": "the", "k": 1})
            assert response.status_code == 200, response.text


# --- item 8: sampling knobs at their limits ----------------------------------------------


PROMPT = {"text": "the company said", "max_tokens": 12, "stop_at_eos": False, "seed": 3}


def generated(client: httpx.Client, **knobs: float | int) -> list[str]:
    response = client.post("/v1/generate", json={**PROMPT, **knobs})
    assert response.status_code == 200, response.text
    tokens = response.json()["tokens"]
    assert len(tokens) == PROMPT["max_tokens"]
    return list(tokens)


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"temperature": 1e-30}, id="temperature-1e-30"),
        pytest.param({"temperature": 1e-300}, id="temperature-1e-300"),
        pytest.param({"temperature": 1.0, "top_k": 1}, id="top_k-1"),
        pytest.param({"temperature": 1.0, "top_p": 1e-300}, id="top_p-1e-300"),
    ],
)
def test_limits_of_sampling_behave_as_greedy(
    plain_server: ServerProcess, ptb_vocabulary: Vocabulary, knobs: dict[str, float]
) -> None:
    with client_for(plain_server) as client:
        greedy = generated(client, temperature=0)
        tokens = generated(client, **knobs)
    assert all(word in ptb_vocabulary and word != "<unk>" for word in tokens), tokens
    assert tokens == greedy


# --- item 10: auth before the body; any Content-Type is JSON -------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/predict", b"{not json"),
        pytest.param("/v1/score", b"{not json"),
        pytest.param("/v1/generate", b"[1, 2"),
        pytest.param("/v1/sessions", b"{"),
        ("/v1/predict", b'{"k": "many"}'),
        ("/v1/generate", b'{"max_tokens": -1}'),
        ("/v1/sessions", b"[]"),
    ],
)
def test_unauthenticated_malformed_request_is_401(
    keyed_server: ServerProcess, path: str, body: bytes
) -> None:
    with client_for(keyed_server) as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert error_of(response, 401)["code"] == "unauthorized"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/predict",
        pytest.param("/v1/score"),
        pytest.param("/v1/generate"),
    ],
)
def test_text_json_content_type_is_read_as_json(keyed_server: ServerProcess, path: str) -> None:
    body = {"text": "the company said"}
    if path == "/v1/generate":
        body |= {"max_tokens": 3, "temperature": 0}
    with client_for(keyed_server, authorization="Bearer key-a") as client:
        response = client.post(
            path, content=json.dumps(body).encode(), headers={"Content-Type": "text/json"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["model"]
