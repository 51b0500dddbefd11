"""``lstm-serve`` / ``python -m service``: flags mirror the ``LSTM_SERVE_*`` settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from models.checkpoint import CheckpointError, read_config
from service import logs
from service.cpu_sharing import set_gil_switch_interval
from service.settings import Settings

log = logging.getLogger("lstm_serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-serve",
        description="Serve a recurrent language model over HTTP/WebSocket.",
        epilog="Every flag can also be set as an environment variable LSTM_SERVE_<NAME>.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "LSTM_SERVE_" + name.upper()
        help_text = f"{field.description} (env {env}; default {field.default!r})"
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)
    return parser


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: readiness 503 and new work refused at once, streams closed,
    in-flight requests finished (up to the drain timeout), then uvicorn's own shutdown.
    A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_timeout_s = drain_timeout_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        self._draining = True
        log.info(
            "signal %s: draining for up to %.0fs", signal.Signals(sig).name, self.drain_timeout_s
        )
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_then_exit(sig, frame)))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        await self.app.state.drain.drain(self.drain_timeout_s)
        super().handle_exit(sig, frame)
        # A completed drain is a clean exit (status 0): uvicorn would otherwise re-raise
        # the signal after shutdown and the process would die "killed by SIGTERM".
        getattr(self, "_captured_signals", []).clear()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"])
            print(f"lstm-serve: invalid setting {where}: {problem['msg']}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level, settings.log_json)
    set_gil_switch_interval(settings.gil_switch_interval_ms)
    log.info("GIL switch interval %g ms", settings.gil_switch_interval_ms)
    try:
        read_config(settings.model_path)  # fail fast on a wrong path, before listening
    except CheckpointError as error:
        log.error("cannot serve %s: %s", settings.model_path, error)
        sys.exit(2)
    from service.api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,
        ws=settings.ws_protocol,
        ws_max_size=max(settings.max_ws_message_bytes * 2, 1 << 20),
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        access_log=False,
        lifespan="on",
    )
    DrainingServer(config, app, settings.drain_timeout_s).run()
