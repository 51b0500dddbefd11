"""The two kinds of child process the supervisor starts: the engine and an API process.

Each child leaves the supervisor's process group (a terminal's Ctrl-C or a group signal
reaches only the supervisor, which then shuts the children down in order) and asks the
kernel for SIGTERM when the supervisor dies, so no child outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

from service import logs
from service.cpu_sharing import set_gil_switch_interval, tune_garbage_collector
from service.engine.native_names import name_this_thread
from service.listeners import listener_from
from service.settings import Settings

log = logging.getLogger("lstm_serve")
PR_SET_PDEATHSIG = 1
WS_MAX_LINE_BYTES = 65536


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM while a child is spawned: the child inherits the mask, so a SIGTERM
    sent while it is still starting stays pending until ``_stop_cleanly_until_serving``.
    The spawn start method starts its resource tracker on first use and unblocks SIGTERM
    after doing so, so the tracker is started before the mask is set."""
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _exit_cleanly(sig: int, frame: object) -> None:
    raise SystemExit(0)


def _stop_cleanly_until_serving() -> None:
    """Until the child's own handler takes over (uvicorn's, the engine loop's), a SIGTERM
    stops it with status 0: it has taken no work yet, so there is nothing to drain."""
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _become_child(settings: Settings, name: str) -> None:
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    name_this_thread(f"lstm-{name}")  # the main thread's name is the process's, in ps/top
    logs.configure(settings.log_level, settings.log_json, process=name)


# ---- the engine process ---------------------------------------------------------------
def run_engine(settings_fields: dict[str, Any], address: str, ready: Connection) -> None:
    """Load the model, serve the channel, tell the supervisor; SIGTERM stops it cleanly
    (sessions stored first). Exit status 0 after a clean stop, 1 if it could not start."""
    _stop_cleanly_until_serving()
    settings = Settings(**settings_fields)
    _become_child(settings, "engine")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_gil_switch_interval(settings.gil_switch_interval_ms)
    log.info("GIL switch interval %g ms", settings.gil_switch_interval_ms)
    try:
        asyncio.run(_serve_engine(settings, address, ready))
    except Exception as error:
        log.exception("engine failed")
        with contextlib.suppress(OSError):
            ready.send(("failed", str(error)))
        raise SystemExit(1) from error


async def _serve_engine(settings: Settings, address: str, ready: Connection) -> None:
    from service.engine.core import Engine
    from service.engine.server import EngineServer

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    engine = Engine(settings.engine_config())
    await engine.start()
    server = EngineServer(engine, address)
    server.start()
    tune_garbage_collector()
    ready.send(("ready", None))
    await stop.wait()
    log.info("engine stopping: storing sessions")
    await engine.stop()
    await server.stop()
    log.info("engine stopped")


# ---- an API process ----------------------------------------------------------------------
def run_api(settings_fields: dict[str, Any], address: str, listener: socket.socket) -> None:
    """Serve HTTP and WebSockets on the supervisor's port until SIGTERM drains."""
    _stop_cleanly_until_serving()
    # The websockets library stops reading an upgrade request at a line of 8 KiB and then
    # never answers (seen with uvicorn 0.54); reading longer lines lets the stream
    # endpoint refuse an over-long session_id with the contract's error instead.
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", str(WS_MAX_LINE_BYTES))
    import uvicorn

    from service.api.app import create_app
    from service.api.server import DrainingServer

    settings = Settings(**settings_fields)
    _become_child(settings, f"api-{os.getpid()}")
    app = create_app(settings, address)
    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        workers=1,
        log_config=None,
        ws=settings.ws_protocol,
        ws_max_size=settings.ws_frame_limit_bytes(),
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        access_log=False,
        lifespan="on",
    )
    server = DrainingServer(config, app, settings.drain_timeout_s)
    try:
        server.run(sockets=[listener_from(listener)])
    except SystemExit as stop:  # uvicorn re-raises a captured signal into _exit_cleanly
        if stop.code:  # uvicorn's own sys.exit(1): a failure stays a failure
            raise
    if server.force_exit:
        raise SystemExit(1)  # a second signal cut the drain short
