"""The API processes' listening sockets: one per process on the same port, so that the
kernel spreads connections evenly between them.

Why: with one listening socket shared by every API process, whichever process wakes first
accepts everything queued (asyncio and libuv accept until the queue is empty). 1,000
WebSocket clients connecting at once split 653 / 355 between two processes, and the busier
one set the tail latency of all its sessions. With ``SO_REUSEPORT`` (Linux) each process
listens on its own socket and the kernel hashes each new connection to one of them:
an even split whatever the processes are doing (BENCHMARKS §0.11).

The supervisor binds the port (so a busy port, or port 0's choice, is settled once,
before any process starts) but does not listen on that socket: a listening socket in
the group would get its share of connections and never accept them. Each API process
binds its own socket to the same address and listens. Where there is one API process, or
no ``SO_REUSEPORT``, the supervisor's socket listens and is shared as before.
"""

from __future__ import annotations

import socket
import sys

BACKLOG = 2048


def spreads() -> bool:
    """Whether the kernel spreads connections over sockets bound with ``SO_REUSEPORT``
    (Linux does; BSDs and macOS give them all to one socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_for(host: str, port: int, processes: int) -> socket.socket:
    """The supervisor's socket for ``processes`` API processes: bound and listening when
    they share it, bound only (holding the port) when each will listen on its own.

    Either way a port another server listens on is refused (``OSError``, address in use):
    a ``SO_REUSEPORT`` bind alone would join that server's group and quietly take half
    its connections, so the port is first bound without it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    own = processes > 1 and spreads()
    if own:
        probe = _bound(family, (host, port), False)  # fails where anyone listens
        port = probe.getsockname()[1]  # port 0's choice, kept for the group
        probe.close()
    sock = _bound(family, (host, port), own)
    if not own:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def listener_from(inherited: socket.socket) -> socket.socket:
    """The socket this API process accepts on: the inherited one when it listens (shared),
    else a socket of its own on the same address in the ``SO_REUSEPORT`` group."""
    if inherited.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return inherited
    own = _bound(inherited.family, inherited.getsockname(), True)
    own.listen(BACKLOG)
    inherited.close()
    return own


def _bound(family: socket.AddressFamily, address: tuple, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
