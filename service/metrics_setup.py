"""One ``/metrics`` for every process.

The supervisor points prometheus_client's multiprocess mode at a directory of its own
(``PROMETHEUS_MULTIPROC_DIR``, which prometheus_client itself reads in each child); the
engine and every API process write their values there, and whichever API process
answers a scrape reads them all. Without the supervisor (a test building an app in
process) the app's own registry is rendered.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def render(own: CollectorRegistry) -> bytes:
    """The Prometheus text of every process (multiprocess mode), else of ``own``."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(own)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)
