"""Locust users for lstm-serve: stateless + session HTTP traffic, and WebSocket streams.

Locust gives a web UI, ramp-up shapes and distributed workers; ``lstm-serve-bench`` gives
open-loop load and exact percentiles. Both send the texts of ``bench/texts.py``.

Headless, against ``make run`` (http://127.0.0.1:8000), from the repository root::

    PYTHONPATH=. locust -f bench/loadgen/locustfile.py --headless --host http://127.0.0.1:8000 \\
        -u 50 -r 10 -t 60s --csv /tmp/lstm --only-summary ApiUser StreamUser

``-u`` users, ``-r`` started per second, ``-t`` run time; class names pick the users
(both by default, weighted 3:1). ``--api-key KEY`` (or ``LOCUST_API_KEY``) sends a bearer
key. Failures are named by HTTP status and contract ``error.code``, e.g. ``429 overloaded``.
Locust is closed loop (each user waits for its answer): see ``docs/LOADTEST.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import Any

from locust import FastHttpUser, User, between, events, task
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench.loadgen.texts import TextSource

_seeds = itertools.count()


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--api-key",
        default="",
        env_var="LOCUST_API_KEY",
        help="bearer key for lstm-serve (empty: no auth)",
    )


def _auth(user: User) -> dict[str, str]:
    key = user.environment.parsed_options.api_key if user.environment.parsed_options else ""
    return {"Authorization": f"Bearer {key}"} if key else {}


def _failure(status: int, body: str) -> str:
    """``"<status> <error.code>"`` so Locust's failure table groups by contract code."""
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} (no error body)"


class ApiUser(FastHttpUser):
    """Stateless predict/score plus a session fed one word at a time (weights 4:2:3)."""

    weight = 3
    wait_time = between(0.0, 0.2)

    def on_start(self) -> None:
        self.texts = TextSource(next(_seeds))
        self.headers = _auth(self)
        self.session_id: str | None = None

    def _post(self, path: str, body: dict[str, Any], name: str) -> dict[str, Any] | None:
        with self.client.post(
            path, json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code >= 400:
                response.failure(_failure(response.status_code, response.text or ""))
                return None
            try:
                answer: dict[str, Any] = response.json()
            except ValueError:
                response.failure(f"{response.status_code} (body is not JSON)")
                return None
            return answer

    @task(4)
    def predict(self) -> None:
        self._post("/v1/predict", {"text": self.texts.prefix(), "k": 5}, "predict")

    @task(2)
    def score(self) -> None:
        self._post("/v1/score", {"text": self.texts.sentence()}, "score")

    @task(3)
    def feed(self) -> None:
        if self.session_id is None:
            answer = self._post("/v1/sessions", {"k": 5}, "session create")
            self.session_id = None if answer is None else str(answer["session_id"])
            return
        path = f"/v1/sessions/{self.session_id}/feed"
        if self._post(path, {"text": self.texts.next_word(), "k": 5}, "session feed") is None:
            self.session_id = None  # lost or failed: start a new one next time

    def on_stop(self) -> None:
        if self.session_id is not None:
            self.client.delete(
                f"/v1/sessions/{self.session_id}", headers=self.headers, name="session delete"
            )


class StreamUser(User):
    """One ``WS /v1/stream`` per user, feeding a word per think time, reading predictions.

    Uses the ``websockets`` sync client; under Locust's gevent monkey-patching its socket
    and reader thread become cooperative, so thousands of users share one process.
    """

    weight = 1
    wait_time = between(0.2, 0.8)

    def _fire(self, name: str, start: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - start) * 1e3,
            response_length=length,
            exception=exc,
            context={},
        )

    def on_start(self) -> None:
        self.texts = TextSource(next(_seeds))
        self.conn: ClientConnection | None = None
        self.ids = itertools.count()
        url = (self.host or "http://127.0.0.1:8000").replace("http", "ws", 1).rstrip(
            "/"
        ) + "/v1/stream"
        start = time.perf_counter()
        try:
            stack = contextlib.ExitStack()  # connect() is meant as a context manager
            conn = stack.enter_context(
                connect(
                    url,
                    additional_headers=_auth(self),
                    compression=None,
                    proxy=None,
                    open_timeout=10,
                )
            )
            ready = json.loads(conn.recv(timeout=10))
            if ready.get("type") != "ready":
                stack.close()
                raise RuntimeError(f"{ready.get('code', 'no ready')}")
            self.conn, self.stack = conn, stack
            self._fire("connect", start, 0, None)
        except Exception as exc:  # reported to Locust as a failed connect
            self._fire("connect", start, 0, exc)

    @task
    def feed(self) -> None:
        if self.conn is None:
            self.on_start()
            return
        request_id = str(next(self.ids))
        start = time.perf_counter()
        try:
            self.conn.send(
                json.dumps(
                    {"type": "feed", "text": self.texts.next_word(), "k": 5, "id": request_id}
                )
            )
            while True:
                raw = self.conn.recv(timeout=30)
                answer = json.loads(raw)
                if answer.get("type") in ("predictions", "error"):
                    break
            if answer["type"] == "error":
                raise RuntimeError(str(answer.get("code")))
            self._fire("feed", start, len(raw), None)
        except (ConnectionClosed, TimeoutError) as exc:
            self._fire("feed", start, 0, exc)
            self._drop()  # the next task reconnects
        except (RuntimeError, ValueError) as exc:
            self._fire("feed", start, 0, exc)

    def _drop(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            self.stack.close()
        self.conn = None

    def on_stop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(ConnectionClosed):
                self.conn.send(json.dumps({"type": "close"}))  # the server deletes the session
            self._drop()
