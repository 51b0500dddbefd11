"""``lstm-serve``'s supervisor: start the engine, wait until it is ready, then the API
processes; watch them all; shut them down in order.

- The engine's death: API processes answer 503 at once (they watch it), the supervisor
  leaves them up for ``ENGINE_DEATH_GRACE_S`` so probes see it, stops them and exits 1:
  the orchestrator restarts the container.
- An API process's death: the rest are stopped in order too, exit 1.
- SIGTERM/SIGINT: API processes drain (readiness 503, new work refused, streams closed,
  in-flight requests finished, session states stored), then the engine stores what is
  left and stops; exit 0. A second signal makes the API processes stop at once; exit 1.

Children are started with ``multiprocessing``'s spawn (CUDA needs it); the port is bound
here, and every API process accepts on it: on its own ``SO_REUSEPORT`` socket where the
kernel spreads connections (Linux), else on this one, shared (``service.listeners``). They are
started with SIGTERM blocked (``service.processes.sigterm_blocked``): a SIGTERM that comes
while a child is still importing waits until it can stop cleanly, instead of killing it
(exit status -15, which made a stop right after readiness exit 1).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from service.listeners import bind_for
from service.metrics_setup import MULTIPROC_ENV
from service.processes import run_api, run_engine, sigterm_blocked
from service.settings import Settings

log = logging.getLogger("lstm_serve")
ENGINE_DEATH_GRACE_S = 1.0
ENGINE_STOP_TIMEOUT_S = 60.0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workdir = tempfile.mkdtemp(prefix="lstm-serve-")
        self.address = f"ipc://{self.workdir}/engine.sock"
        self.engine: BaseProcess | None = None
        self.apis: list[BaseProcess] = []
        self.signals = 0
        self._wake_r, self._wake_w = os.pipe()

    def run(self) -> int:
        metrics_dir = os.path.join(self.workdir, "metrics")
        os.mkdir(metrics_dir)
        os.environ[MULTIPROC_ENV] = metrics_dir  # read by prometheus_client in the children
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            self._kill_leftovers()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        log.info("signal %s: shutting down", signal.Signals(sig).name)
        if self.signals > 1:  # the second one: API processes stop at once
            self._signal_apis(signal.SIGTERM)
        os.write(self._wake_w, b"x")

    def _run(self) -> int:
        if not self._start_engine():
            return 1
        if self.signals:
            return self._shutdown()
        try:
            listener = self._listen()
        except OSError as error:  # the port is taken (another server) or not ours to bind
            log.error("cannot listen on %s:%d: %s", self.settings.host, self.settings.port, error)
            self._shutdown()
            return 1
        fields = self.settings.model_dump()
        for _ in range(self.settings.api_processes()):
            api = self.context.Process(
                target=run_api, args=(fields, self.address, listener), name="lstm-serve-api"
            )
            with sigterm_blocked():
                api.start()
            self.apis.append(api)
        listener.close()  # the children hold it now
        log.info(
            "serving on http://%s:%d with %d API process(es) and one engine process",
            self.settings.host,
            self.settings.port,
            len(self.apis),
        )
        return self._watch()

    def _start_engine(self) -> bool:
        """Start the engine and wait until it says ready (or fails, or a signal comes)."""
        receive, send = self.context.Pipe(duplex=False)
        self.engine = self.context.Process(
            target=run_engine,
            args=(self.settings.model_dump(), self.address, send),
            name="lstm-serve-engine",
        )
        with sigterm_blocked():
            self.engine.start()
        send.close()
        while True:
            ready = wait([receive, self.engine.sentinel, self._wake_r])
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                return True  # a signal: shut down in order from here
            if receive in ready:
                try:
                    status, detail = receive.recv()
                except EOFError:
                    status, detail = "failed", "the engine process exited"
                if status == "ready":
                    log.info("engine ready (pid %d)", self.engine.pid)
                    return True
                log.error("engine failed to start: %s", detail)
                return False
            if self.engine.sentinel in ready:
                log.error("engine process exited (status %s) before ready", self.engine.exitcode)
                return False

    def _listen(self) -> socket.socket:
        """The port, bound here once; each API process listens on it (``service.listeners``)."""
        return bind_for(self.settings.host, self.settings.port, self.settings.api_processes())

    def _watch(self) -> int:
        assert self.engine is not None
        while True:
            sentinels = [self.engine.sentinel, *(api.sentinel for api in self.apis)]
            ready = wait([*sentinels, self._wake_r])
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
                return self._shutdown()
            if self.engine.sentinel in ready:
                log.error("engine process died (status %s)", self.engine.exitcode)
                time.sleep(ENGINE_DEATH_GRACE_S)  # API processes answer 503 meanwhile
                self._stop_apis()
                return 1
            dead = [api for api in self.apis if api.sentinel in ready]
            for api in dead:
                log.error("API process %d died (status %s)", api.pid, api.exitcode)
            self._shutdown()
            return 1

    def _shutdown(self) -> int:
        """API processes drain first, then the engine stores sessions and stops."""
        apis_clean = self._stop_apis()
        engine = self.engine
        if engine is None or not engine.is_alive():
            return 0 if apis_clean and (engine is None or engine.exitcode == 0) else 1
        os.kill(engine.pid, signal.SIGTERM)  # type: ignore[arg-type]
        engine.join(ENGINE_STOP_TIMEOUT_S)
        if engine.is_alive():
            log.error("engine did not stop within %.0fs", ENGINE_STOP_TIMEOUT_S)
            engine.kill()
            engine.join()
            return 1
        log.info("engine exited (status %s)", engine.exitcode)
        return 0 if apis_clean and engine.exitcode == 0 else 1

    def _stop_apis(self) -> bool:
        self._signal_apis(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + 10
        clean = True
        for api in self.apis:
            api.join(max(0.0, deadline - time.monotonic()))
            if api.is_alive():
                log.error("API process %d did not stop in time", api.pid)
                api.kill()
                api.join()
            clean = clean and api.exitcode == 0
            _forget_metrics_of(api.pid)
        return clean

    def _signal_apis(self, sig: int) -> None:
        for api in self.apis:
            if api.is_alive() and api.pid is not None:
                os.kill(api.pid, sig)

    def _kill_leftovers(self) -> None:
        for process in [*self.apis, *([self.engine] if self.engine else [])]:
            if process.is_alive():
                process.kill()
                process.join()


def _forget_metrics_of(pid: int | None) -> None:
    """Drop a stopped process's live gauges (prometheus_client's multiprocess mode)."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
