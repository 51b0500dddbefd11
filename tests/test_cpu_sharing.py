"""Defaults for sharing the CPU between the event loop and the inference thread."""

from __future__ import annotations

import os
import sys

from service import cpu_sharing


def test_engine_threads_get_the_cpus_the_api_processes_leave(monkeypatch) -> None:
    from service import settings as settings_module
    from service.settings import Settings

    monkeypatch.delenv("LSTM_SERVE_API_WORKERS", raising=False)  # conftest pins tests to 1
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 16)
    assert Settings().api_processes() == 4
    assert Settings().engine_threads() == 12
    assert Settings(api_workers=2, threads=3).engine_threads() == 3  # explicit wins
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 2)
    assert Settings().api_processes() == 2  # HTTP parsing is the bottleneck (BENCHMARKS §0)
    assert Settings().engine_threads() == 1
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 1)
    assert Settings().api_processes() == 1
    assert Settings().engine_threads() == 1


def test_available_cpus_is_within_the_machine() -> None:
    assert cpu_sharing.available_cpus() in range(1, (os.cpu_count() or 1) + 1)


def test_gil_switch_interval_is_process_wide() -> None:
    before = sys.getswitchinterval()
    try:
        cpu_sharing.set_gil_switch_interval(0.25)
        assert abs(sys.getswitchinterval() - 0.00025) < 1e-9
    finally:
        sys.setswitchinterval(before)
