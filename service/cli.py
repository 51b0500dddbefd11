"""``lstm-serve`` / ``python -m service``: flags mirror the ``LSTM_SERVE_*`` settings."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from models.checkpoint import CheckpointError, read_config
from service import logs
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
    logs.configure(settings.log_level, settings.log_json, process="supervisor")
    try:
        read_config(settings.model_path)  # fail fast on a wrong path, before any process
    except CheckpointError as error:
        log.error("cannot serve %s: %s", settings.model_path, error)
        sys.exit(2)
    from service.supervisor import Supervisor

    sys.exit(Supervisor(settings).run())
