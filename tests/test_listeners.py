"""``service.listeners``: with several API processes each listens on its own socket of the
port and the kernel spreads new connections between them; with one, the supervisor's
socket is shared as before."""

from __future__ import annotations

import errno
import select
import socket

import pytest

from service.listeners import bind_for, listener_from, spreads


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def test_one_process_shares_the_supervisors_listening_socket() -> None:
    held = bind_for("127.0.0.1", 0, processes=1)
    try:
        assert _listening(held)
        assert listener_from(held) is held
    finally:
        held.close()


@pytest.mark.skipif(not spreads(), reason="SO_REUSEPORT spreads connections on Linux only")
def test_each_process_listens_on_its_own_socket_and_connections_spread() -> None:
    held = bind_for("127.0.0.1", 0, processes=2)
    port = held.getsockname()[1]
    try:
        assert not _listening(held)  # it holds the port; a listener here would never accept
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # what two API processes do, each with its own copy of the supervisor's socket
        first = listener_from(held.dup())
        second = listener_from(held.dup())
        assert _listening(first) and _listening(second)
        assert first.getsockname() == second.getsockname() == held.getsockname()
        accepted = _accept_counts([first, second], port, clients=200)
    finally:
        held.close()
    # 200 connections hashed over two sockets: 100 +- 7 each (one standard deviation)
    assert min(accepted) >= 60, accepted
    assert sum(accepted) == 200


def _accept_counts(listeners: list[socket.socket], port: int, clients: int) -> list[int]:
    counts = [0] * len(listeners)
    conns: list[socket.socket] = []
    try:
        for _ in range(clients):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        while sum(counts) < clients:
            ready, _, _ = select.select(listeners, [], [], 5)
            assert ready, f"only {sum(counts)} of {clients} connections arrived"
            for sock in ready:
                conn, _ = sock.accept()
                conns.append(conn)
                counts[listeners.index(sock)] += 1
    finally:
        for conn in conns:
            conn.close()
        for sock in listeners:
            sock.close()
    return counts


@pytest.mark.skipif(not spreads(), reason="SO_REUSEPORT spreads connections on Linux only")
def test_a_port_another_server_listens_on_is_refused() -> None:
    """A second server on the same port fails as it did with one shared socket, instead of
    joining the first one's SO_REUSEPORT group and taking half its connections."""
    first = bind_for("127.0.0.1", 0, processes=2)
    port = first.getsockname()[1]
    listening = listener_from(first.dup())  # the first server's API process
    try:
        for processes in (1, 2):
            with pytest.raises(OSError) as refused:
                bind_for("127.0.0.1", port, processes).close()
            assert refused.value.errno == errno.EADDRINUSE
    finally:
        listening.close()
        first.close()
