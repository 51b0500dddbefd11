"""Start a real ``redis-server`` on 127.0.0.1 (a free port, a temp dir) for tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.serverproc import free_port

REDIS_SERVER = shutil.which("redis-server")


@dataclass
class RedisProcess:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.directory / "redis.log").read_text())
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Graceful (SIGTERM): Redis writes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def used_memory_bytes(self) -> int:
        return int(self.info("memory")["used_memory"])

    def info(self, section: str) -> dict[str, str]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            buffer = b""
            while b"\r\n" not in buffer:
                buffer += sock.recv(65536)
            head, body = buffer.split(b"\r\n", 1)
            while len(body) < int(head[1:]):
                body += sock.recv(65536)
        lines = body.decode().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(free_port(), directory)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
