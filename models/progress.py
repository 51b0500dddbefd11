"""A dependency-free progress line: loss, perplexity, tokens/s and ETA."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class Progress:
    """Redraws one line on a terminal; prints a line every ``log_every_s`` otherwise."""

    def __init__(
        self, total: int, label: str, stream: TextIO = sys.stderr, log_every_s: float = 30.0
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.started = time.monotonic()
        self.last_print = 0.0
        self.log_every_s = log_every_s
        self.tty = stream.isatty()

    def update(self, done: int, loss: float, tokens: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_print < self.log_every_s and done < self.total:
            return
        self.last_print = now
        elapsed = max(now - self.started, 1e-9)
        eta = elapsed / max(done, 1) * (self.total - done)
        width = 24
        filled = int(width * done / max(self.total, 1))
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"loss {loss:.3f} ppl {math.exp(min(loss, 50)):.1f} "
            f"{tokens / elapsed:,.0f} tok/s ETA {eta:,.0f}s"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
