"""Re-export of ``bench.serverproc``: the one way to start a real server, shared with bench/.

Tests may import bench, never the reverse (``tests/test_layers.py``), so the logic lives there.
"""

from bench.serverproc import (
    ROOT,
    ServerProcess,
    free_port,
    running_server,
    start_server,
    wait_until_ready,
)

__all__ = [
    "ROOT",
    "ServerProcess",
    "free_port",
    "running_server",
    "start_server",
    "wait_until_ready",
]
