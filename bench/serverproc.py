"""The one way to start a server for a benchmark or an integration test, on 127.0.0.1.

``start_server`` runs ``python -m service`` (the ``lstm-serve`` supervisor, its engine and
API processes) with ``LSTM_SERVE_*`` settings; ``start_app`` runs any other command (the
echo app, the LitServe peer) in its own process group, so stopping it stops every process
it spawned. Both wait until the server answers its readiness path. Tests import this
module (``tests/serverproc.py`` re-exports it); bench never imports tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    group: bool = False  # signal the whole process group (``start_app``)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self._signal(sig)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            code = self.process.wait(timeout=10)
        if self.group:  # workers the app left behind (LitServe's inference processes)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)


def start_server(
    env: dict[str, str], log_path: Path, ready_timeout_s: float = 90.0, wait_ready: bool = True
) -> ServerProcess:
    """Spawn the server with ``LSTM_SERVE_*`` ``env`` and wait until ``/readyz`` is 200."""
    port = int(env.get("LSTM_SERVE_PORT") or free_port())
    full_env = {
        **os.environ,
        "LSTM_SERVE_HOST": "127.0.0.1",
        "LSTM_SERVE_PORT": str(port),
        "LSTM_SERVE_DEVICE": "cpu",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(process, port, log_path)
    if wait_ready:
        wait_until_ready(server, ready_timeout_s)
    return server


def start_app(
    command: list[str], log_path: Path, port: int, ready_path: str = "/readyz"
) -> ServerProcess:
    """Run ``command`` (listening on ``port``) in its own process group, wait for readiness."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = ServerProcess(process, port, log_path, group=True)
    wait_until_ready(server, 120.0, ready_path)
    return server


def wait_until_ready(
    server: ServerProcess, timeout_s: float = 90.0, ready_path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready within {timeout_s}s:\n{server.log()}")


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[ServerProcess]:
    server = start_server(env, log_path)
    try:
        yield server
    finally:
        server.stop()
