"""The process split (#13): supervisor, engine process, API processes, one error table."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.api import errors as api_errors
from service.engine import errors
from tests.serverproc import start_server

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), newest last."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def _engine_pid(server_pid: int) -> int:
    """The engine is the supervisor's child whose command line says run_engine... or, simply,
    the one started first (the supervisor starts API processes only once it is ready)."""
    children = _children(server_pid)
    procs = [(Path(f"/proc/{p}/stat").read_text().split()[21], p) for p in children]
    started = sorted((int(ticks), pid) for ticks, pid in procs)
    # multiprocessing's resource tracker may also be a child: skip it by its command line
    for _, pid in started:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"resource_tracker" not in cmdline:
            return pid
    raise AssertionError(f"no engine process among {children}")


def test_killing_the_engine_turns_readiness_503_and_the_supervisor_exits_non_zero(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    server = start_server({"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint)}, tmp_path / "s.log")
    try:
        assert httpx.post(server.url + "/v1/predict", json={"text": "the"}).status_code == 200
        engine = _engine_pid(server.process.pid)
        os.kill(engine, signal.SIGKILL)
        seen = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                seen = httpx.get(server.url + "/readyz", timeout=2)
            except httpx.HTTPError:
                break  # the API process is gone already
            if seen.status_code == 503:
                break
            time.sleep(0.02)
        assert seen is not None and seen.status_code == 503, seen
        assert "engine" in seen.json()["reason"]
        work = httpx.post(server.url + "/v1/predict", json={"text": "the"})
        assert work.status_code == 503 and work.json()["error"]["code"] == "not_ready"
        assert server.process.wait(timeout=30) != 0
    finally:
        server.stop(signal.SIGKILL)


def test_two_api_processes_serve_one_session_like_one_process(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    words = "the company said it expects sales to rise in the next quarter".split()

    def run(api_workers: int) -> tuple[list[tuple[int, list[str]]], str]:
        env = {
            "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
            "LSTM_SERVE_API_WORKERS": str(api_workers),
        }
        server = start_server(env, tmp_path / f"{api_workers}.log")
        try:
            created = httpx.post(server.url + "/v1/sessions", json={"text": ""}).json()
            answers = []
            for word in words:  # a fresh connection each time: any process may answer
                feed = httpx.post(
                    f"{server.url}/v1/sessions/{created['session_id']}/feed",
                    json={"text": word, "k": 3},
                    headers={"Connection": "close"},
                )
                assert feed.status_code == 200, feed.text
                body = feed.json()
                answers.append((body["position"], [p["word"] for p in body["predictions"]]))
            return answers, server.log()
        finally:
            assert server.stop() == 0

    alone, _ = run(1)
    shared, log = run(2)
    assert shared == alone
    served_by = set(re.findall(r"\[(api-\d+)\] lstm_serve.access POST", log))
    assert len(served_by) == 2, served_by  # both processes answered feeds of the session


def test_a_second_server_on_a_taken_port_exits_1_and_the_first_keeps_its_connections(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Each API process listens on its own SO_REUSEPORT socket; a second server on the
    same port must fail as before, not join the first one's group and take half of its
    connections."""
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_API_WORKERS": "2"}
    first = start_server(env, tmp_path / "first.log")
    try:
        second = start_server(
            {**env, "LSTM_SERVE_PORT": str(first.port)}, tmp_path / "second.log", wait_ready=False
        )
        try:
            assert second.process.wait(timeout=90) == 1, second.log()
            assert "cannot listen on" in second.log()
        finally:
            second.stop(signal.SIGKILL)
        statuses = {
            httpx.get(first.url + "/readyz", headers={"Connection": "close"}).status_code
            for _ in range(20)
        }
        assert statuses == {200}  # fresh connections: both API processes still answer
    finally:
        assert first.stop() == 0


def _wait_for_line(server_log: Path, text: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in server_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.005)


def test_a_stop_while_api_processes_are_still_starting_exits_0(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """SIGTERM right after the supervisor spawned its API processes (they take seconds to
    import): each must stop with status 0, so the server exits 0. Before the fix the
    signal killed a still-importing API process (status -15) and the server exited 1;
    the CI's docker smoke test hit that when its stop came before the second process was
    up."""
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_API_WORKERS": "2"}
    log_path = tmp_path / "early.log"
    server = start_server(env, log_path, wait_ready=False)
    try:
        _wait_for_line(log_path, "serving on")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log()
        assert "died" not in server.log()
    finally:
        server.stop(signal.SIGKILL)


def test_a_stop_while_the_engine_is_loading_exits_0(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """SIGTERM while the engine process is still starting (importing torch, loading the
    model): a stop, not a failed start, so the server exits 0 and starts no API process."""
    log_path = tmp_path / "loading.log"
    server = start_server(
        {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint)}, log_path, wait_ready=False
    )
    try:
        deadline = time.monotonic() + 30
        while len(_children(server.process.pid)) < 2:  # the resource tracker and the engine
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.005)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log()
        assert "serving on" not in server.log()
    finally:
        server.stop(signal.SIGKILL)


def test_a_second_sigterm_cuts_the_drain_short_and_the_exit_says_so(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The first SIGTERM drains (exit 0 once in-flight work is done); a second one stops
    the API processes at once, and a drain cut short is not a clean exit."""
    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_MAX_BATCH_SIZE": "1",
        "LSTM_SERVE_DRAIN_TIMEOUT_S": "60",
    }
    server = start_server(env, tmp_path / "twice.log")
    text = " ".join(["the market"] * 9000)

    def slow() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(server.url + "/v1/score", json={"text": text}, timeout=120)

    threads = [threading.Thread(target=slow) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the scores are queued behind one another (batches of one)
        server.process.send_signal(signal.SIGTERM)
        _wait_for_line(tmp_path / "twice.log", "draining")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) != 0, server.log()
    finally:
        server.stop(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=10)


def test_every_typed_error_maps_to_a_status_and_a_stream_error() -> None:
    class Narrower(errors.SessionNotFound):
        """A subclass maps like its base."""

    for kind in errors.ALL_ERRORS:
        error = kind.__new__(kind)
        errors.ServeError.__init__(error, "message")
        status = api_errors.status_of(error)
        assert 400 <= status < 600 and status != 500, kind
        assert api_errors.ws_error(error)["code"] == kind.code
        assert errors.from_code(kind.code, "m").code == kind.code  # across the channel
    assert api_errors.status_of(Narrower("x")) == 404
    assert api_errors.ws_error(Narrower("x"))["code"] == "session_not_found"
    assert api_errors.status_of(errors.ServeError("bug")) == 500
    assert api_errors.ws_error(errors.ServeError("bug"))["code"] == "internal"
