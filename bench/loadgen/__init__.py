"""``lstm-serve-bench``: the asyncio load generator (open or closed loop) and the Locust file.

The only part of bench/ that is packaged; ``bench.loadgen:main`` is the console script.
"""

from bench.loadgen.cli import main

__all__ = ["main"]
