"""The clients beside wrk: one ``python -m bench.loadgen`` run, and a ``/readyz`` poller.

Separate from the wrk driver because they are Python clients with their own JSON output
(loadgen) or their own thread (the poller), used by the WebSocket and overload parts.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from bench.serverproc import ROOT


def run_loadgen(argv: list[str], json_path: Path, timeout_s: float) -> dict[str, Any]:
    """``python -m bench.loadgen ARGV --json PATH``; its first run, or an ``error``."""
    cmd = [sys.executable, "-m", "bench.loadgen", *argv, "--json", str(json_path)]
    log = json_path.with_suffix(".txt")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, check=False, timeout=timeout_s
        )
        log.write_text(shlex.join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "command": shlex.join(cmd)}
    if not json_path.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        return {"error": f"exit {proc.returncode}, no JSON: {tail}", "command": shlex.join(cmd)}
    run = json.loads(json_path.read_text())["runs"][0]
    run["command"] = shlex.join(cmd)
    run["rc"] = proc.returncode
    return run


class ReadyzPoller(threading.Thread):
    """GET /readyz every ``interval_s`` until stopped; counts non-200 (and failed) polls."""

    def __init__(self, url: str, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.interval_s = url + "/readyz", interval_s
        self.polls = 0
        self.not_ready: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop_event.is_set():
                try:
                    status = str(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.polls += 1
                if status != "200":
                    self.not_ready[status] = self.not_ready.get(status, 0) + 1
                self._stop_event.wait(self.interval_s)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join(timeout=5)
        return {
            "polls": self.polls,
            "not_ready": sum(self.not_ready.values()),
            "not_ready_by_status": self.not_ready,
        }
