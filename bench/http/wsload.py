"""``bench/wsload/wsload.c`` from Python: build it, hand it words, read its JSON.

The C client feeds ``WS /v1/stream`` like ``lstm-serve-bench ws`` (one session per
connection, closed loop or a fixed-rate open loop, the same words) for about a third of
the CPU: 11-12 us per feed against the Python client's 29 us (two processes), measured
beside each other at ~11,000 feeds/s on a 2-core box (BENCHMARKS §0.9). Its JSON has the
loadgen's shape (``ops.ws_feed``, ``client.cpu_util_per_process``), so reports read both.

    python -m bench.http.wsload --url http://127.0.0.1:8000 --sessions 1000 --duration-s 15
    python -m bench.http.wsload --url http://127.0.0.1:8000 --rate 8000 --trace trace.txt

From Python: ``Load(url, sessions, duration_s, rate).run(json_path)``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.loadgen.texts import TextSource
from bench.serverproc import ROOT

SOURCE = ROOT / "bench" / "wsload" / "wsload.c"
BINARY = ROOT / "bench" / "out" / "wsload"
WORDS = 50_000  # the words file cycles; the loadgen's seed-0 stream


def build(binary: Path = BINARY) -> Path:
    """Compile the client if it is missing or older than its source; its path."""
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc): install gcc to build bench/wsload")
    binary.parent.mkdir(parents=True, exist_ok=True)
    command = [compiler, "-O2", "-Wall", "-o", str(binary), str(SOURCE), "-lm"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


def write_words(path: Path, count: int = WORDS, seed: int = 0) -> Path:
    """The words ``lstm-serve-bench ws`` sends (``TextSource.next_word``), one JSON
    string literal per line, as the C client reads them."""
    source = TextSource(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(source.next_word()) + "\n" for _ in range(count)))
    return path


@dataclass(frozen=True)
class Load:
    """What the client is asked for: ``sessions`` streams against the server at ``url``
    (http or ws, an IPv4 host), back to back, or ``rate`` feeds/s in all (open loop)."""

    url: str
    sessions: int
    duration_s: float
    rate: float | None = None
    warmup_s: float = 0.0
    api_key: str | None = None

    def command(
        self, words: Path, json_path: Path | None = None, extra: Sequence[str] = ()
    ) -> list[str]:
        """The client's command line, feeding the words of the file ``words``."""
        parts = urlsplit(self.url)
        argv = [str(build()), "--host", parts.hostname or "127.0.0.1"]
        argv += ["--port", str(parts.port or 80), "--connections", str(self.sessions)]
        argv += ["--duration-s", f"{self.duration_s:g}", "--warmup-s", f"{self.warmup_s:g}"]
        argv += ["--words", str(words)]
        if self.rate:
            argv += ["--rate", f"{self.rate:g}"]
        if json_path is not None:
            argv += ["--json", str(json_path)]
        if self.api_key:
            argv += ["--api-key", self.api_key]
        return [*argv, *extra]

    def run(self, json_path: Path, timeout_s: float | None = None) -> dict[str, Any]:
        """One run; the client's JSON (loadgen-shaped), or ``{"error": ...}``."""
        words = write_words(json_path.with_name("wsload-words.txt"))
        argv = self.command(words, json_path)
        # connects, the grace for the last answers, the sessions' set-up
        budget = timeout_s or self.duration_s + 120 + self.sessions * 0.02
        json_path.unlink(missing_ok=True)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {budget:.0f} s", "command": shlex.join(argv)}
        json_path.with_suffix(".txt").write_text(shlex.join(argv) + "\n\n" + proc.stderr)
        if proc.returncode != 0 or not json_path.exists():
            return {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        result: dict[str, Any] = json.loads(json_path.read_text())
        result["ops"]["total"] = result["ops"]["ws_feed"]  # the loadgen's reports read either
        result["command"] = shlex.join(argv)
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--rate", type=float, help="open loop: feeds per second")
    parser.add_argument("--api-key", default=os.environ.get("LSTM_SERVE_API_KEY"))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "wsload.json")
    parser.add_argument("--trace", type=Path, help="each answered feed's due time and latency")
    args = parser.parse_args(argv)
    load = Load(args.url, args.sessions, args.duration_s, args.rate, args.warmup_s, args.api_key)
    words = write_words(args.json.with_name("wsload-words.txt"))
    extra = ["--trace", str(args.trace)] if args.trace else []
    cmd = load.command(words, args.json, extra)
    raise SystemExit(subprocess.run(cmd, check=False).returncode)


if __name__ == "__main__":
    main()
