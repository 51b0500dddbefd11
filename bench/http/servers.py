"""The servers a benchmark part measures: lstm-serve and the bare echo app, as subprocesses.

Each is a context manager so that a part stops its server even when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from bench.serverproc import ServerProcess, free_port, start_app, start_server


@contextlib.contextmanager
def lstm_server(
    args: argparse.Namespace, env: dict[str, str], name: str
) -> Iterator[ServerProcess]:
    full = {"LSTM_SERVE_MODEL_PATH": str(args.model), "LSTM_SERVE_LOG_LEVEL": "warning", **env}
    server = start_server(full, args.raw / f"server-{name}.log", ready_timeout_s=180)
    try:
        yield server
    finally:
        server.stop()


def echo_command(port: int) -> list[str]:
    """The null server: ``bench.http.echo_app`` under one uvicorn worker."""
    return [
        *(sys.executable, "-m", "uvicorn", "bench.http.echo_app:app"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--log-level", "warning"),
    ]


@contextlib.contextmanager
def echo_server(args: argparse.Namespace) -> Iterator[ServerProcess]:
    port = free_port()
    server = start_app(echo_command(port), args.raw / "server-echo.log", port)
    try:
        yield server
    finally:
        server.stop()
