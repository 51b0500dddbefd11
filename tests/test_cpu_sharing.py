"""Defaults for sharing the CPU between the event loop and the inference thread."""

from __future__ import annotations

import os
import sys

import torch

from service import cpu_sharing


def test_torch_threads_leave_one_cpu_to_the_event_loop(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(cpu_sharing, "available_cpus", lambda: 4)
    assert cpu_sharing.torch_threads(0) == 3
    monkeypatch.setattr(cpu_sharing, "available_cpus", lambda: 16)
    assert cpu_sharing.torch_threads(0) == 8  # never more than torch would use
    monkeypatch.setattr(cpu_sharing, "available_cpus", lambda: 1)
    assert cpu_sharing.torch_threads(0) == 1
    assert cpu_sharing.torch_threads(5) == 5  # an explicit setting wins


def test_available_cpus_is_within_the_machine() -> None:
    assert cpu_sharing.available_cpus() in range(1, (os.cpu_count() or 1) + 1)


def test_gil_switch_interval_is_process_wide() -> None:
    before = sys.getswitchinterval()
    try:
        cpu_sharing.set_gil_switch_interval(0.25)
        assert abs(sys.getswitchinterval() - 0.00025) < 1e-9
    finally:
        sys.setswitchinterval(before)
