"""Run ``deploy/replicas/nginx.conf`` (its upstreams pointed at test replicas) for tests."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.serverproc import ROOT, free_port

NGINX = shutil.which("nginx")
DEPLOY_CONF = ROOT / "deploy" / "replicas" / "nginx.conf"


def config_for(replica_ports: list[int], port: int) -> str:
    """The deploy config with ``listen`` and the upstream servers replaced."""
    text = DEPLOY_CONF.read_text()
    servers = "".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in replica_ports
    )
    text, count = re.subn(
        r"(?:^\s*server replica-\d+:8000[^\n]*\n)+", servers, text, flags=re.MULTILINE
    )
    assert count == 1, "upstream servers not found in deploy/replicas/nginx.conf"
    return text.replace("listen 8080;", f"listen 127.0.0.1:{port};")


@contextlib.contextmanager
def running_nginx(replica_ports: list[int], directory: Path) -> Iterator[int]:
    """nginx in the foreground on a free loopback port; yields the port."""
    assert NGINX is not None
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(config_for(replica_ports, port))
    log = (directory / "nginx.log").open("wb")
    process = subprocess.Popen(
        [
            NGINX,
            "-c",
            str(conf),
            "-p",
            str(directory),
            "-g",
            f"daemon off; pid {directory / 'nginx.pid'};",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError((directory / "nginx.log").read_text())
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
