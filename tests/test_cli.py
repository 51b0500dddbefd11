"""The ``lstm-serve`` entry point: flags mirror settings; bad settings fail fast and clearly."""

from __future__ import annotations

import subprocess
import sys

from service.settings import Settings


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_lists_every_setting() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in result.stdout
        assert "LSTM_SERVE_" + name.upper() in result.stdout


def test_invalid_settings_exit_2_with_a_message() -> None:
    result = _run("--port", "abc")
    assert result.returncode == 2 and "invalid setting port" in result.stderr
    result = _run(env={"LSTM_SERVE_MAX_QUEUE": "0"})
    assert result.returncode == 2 and "max_queue" in result.stderr
    result = _run("--model-path", "/nonexistent/model")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_gil_switch_interval_is_applied_and_checked(server) -> None:
    assert "[engine] lstm_serve GIL switch interval 0.1 ms" in server.log()
    result = _run("--gil-switch-interval-ms", "0")
    assert result.returncode == 2 and "gil_switch_interval_ms" in result.stderr


def test_cpu_kernels_choice_is_logged_and_checked(server) -> None:
    """The engine says which matmul kernels serve, and why (timed, or asked for)."""
    ready = [line for line in server.log().splitlines() if "engine ready:" in line]
    assert ready and ("oneDNN packed weights" in ready[0] or "default kernels" in ready[0])
    result = _run(env={"LSTM_SERVE_CPU_KERNELS": "mkl"})
    assert result.returncode == 2 and "cpu_kernels" in result.stderr
