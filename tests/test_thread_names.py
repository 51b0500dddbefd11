"""Kernel names for the server's processes and threads, and ``bench.thread_cpu``, which
reads per-thread CPU by those names (Linux /proc)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bench import thread_cpu
from bench.proc_cpu import tree_cpu
from service.engine.native_names import name_this_thread

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="needs Linux /proc (thread names)"
)


def _comm(pid: int, tid: int) -> str:
    return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()


def _named_in_thread(name: str) -> str:
    """The kernel name a fresh thread has after ``name_this_thread(name)``."""
    seen: list[str] = []

    def probe() -> None:
        name_this_thread(name)
        seen.append(_comm(threading.get_native_id(), threading.get_native_id()))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return seen[0]


def test_a_thread_takes_its_name_cut_to_the_kernel_limit() -> None:
    assert _named_in_thread("inference") == "inference"
    assert _named_in_thread("a-very-long-thread-name") == "a-very-long-thr"  # 15 bytes


def test_naming_a_thread_leaves_the_others_alone() -> None:
    before = _comm(threading.get_native_id(), threading.get_native_id())
    _named_in_thread("probe-other")
    assert _comm(threading.get_native_id(), threading.get_native_id()) == before


def test_the_servers_processes_and_inference_thread_are_named(server) -> None:
    names = {}
    for pid in tree_cpu(server.process.pid):
        names[pid] = {p.read_text().strip() for p in Path(f"/proc/{pid}/task").glob("*/comm")}
    processes = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in names}
    assert "lstm-engine" in processes
    assert any(name.startswith("lstm-api-") for name in processes)
    (engine,) = [
        pid for pid in names if Path(f"/proc/{pid}/comm").read_text().strip() == "lstm-engine"
    ]
    assert "inference" in names[engine]


def test_thread_cpu_finds_the_busy_thread_by_name() -> None:
    """A child with one named thread spinning and its main thread asleep: the spinner
    shows most of a CPU, the sleeper next to none, and the total is their sum."""
    code = textwrap.dedent(
        """
        import sys, threading, time
        from service.engine.native_names import name_this_thread
        def spin():
            name_this_thread("spinner")
            end = time.monotonic() + 20
            while time.monotonic() < end:
                pass
        threading.Thread(target=spin, daemon=True).start()
        print("ready", flush=True)
        time.sleep(20)
        """
    )
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        shares = thread_cpu.measure(child.pid, 1.0)
    finally:
        child.kill()
        child.wait()
    spinner = [s for s in shares if s.name == "spinner"]
    assert len(spinner) == 1 and spinner[0].run > 0.3
    assert all(s.run < 0.1 for s in shares if s.name != "spinner")
    printed = thread_cpu.table(shares)
    assert "spinner" in printed and "total" in printed


def _nice_of(pid: int, tid: int) -> int:
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def test_inference_nice_applies_to_the_inference_thread_alone(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A positive value needs no privilege, so this runs anywhere: the inference thread
    takes it and the engine's other threads keep theirs."""
    from tests.serverproc import running_server

    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_INFERENCE_NICE": "7"}
    with running_server(env, tmp_path / "server.log") as server:
        engines = [
            pid
            for pid in tree_cpu(server.process.pid)
            if Path(f"/proc/{pid}/comm").read_text().strip() == "lstm-engine"
        ]
        (engine,) = engines
        threads = {
            int(task.name): (task / "comm").read_text().strip()
            for task in Path(f"/proc/{engine}/task").glob("*")
        }
        nices = {tid: _nice_of(engine, tid) for tid in threads}
    (inference,) = [tid for tid, name in threads.items() if name == "inference"]
    assert nices[inference] == 7  # setpriority sets, it does not add
    assert all(nices[tid] == nices[engine] != 7 for tid in nices if tid != inference)
    assert "kept its priority" not in server.log()


def test_a_refused_nice_is_reported_not_raised() -> None:
    """Lowering a nice value without CAP_SYS_NICE: run as an unprivileged user (root
    drops to nobody in a child first)."""
    code = textwrap.dedent(
        """
        import os
        from service.engine.native_names import set_this_thread_nice
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        print(set_this_thread_nice(-5))
        """
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:")


def test_the_setting_is_bounded_like_nice_itself() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings(inference_nice=-20).engine_config().inference_nice == -20
    for bad in (-21, 20):
        with pytest.raises(ValidationError):
            Settings(inference_nice=bad)
