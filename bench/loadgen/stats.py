"""Recording of per-operation outcomes and their summary (percentiles, throughput, errors).

Raw latencies are kept (floats, a few MB per million requests) rather than a histogram,
so percentiles are exact and worker processes can ship their records to the parent to be
merged before any percentile is taken (percentiles of percentiles are meaningless).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)
# Operations that prepare or tear down load (sessions, sockets); reported but not part of
# the "total" row, whose latency and throughput describe the requests under test.
SETUP_OPS = frozenset({"session_create", "ws_connect"})
TOTAL = "total"


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``pct`` % at or below it.

    Unlike interpolation it always returns a latency that really happened and never
    understates the tail (p99.9 of 100 samples is the maximum). NaN when empty.
    """
    if not sorted_values:
        return math.nan
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile {pct} outside [0, 100]")
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9, mean and max of ``latencies_s``, in milliseconds."""
    values = sorted(latencies_s)
    out = {f"p{pct:g}": percentile(values, pct) * 1e3 for pct in PERCENTILES}
    out["mean"] = (sum(values) / len(values) * 1e3) if values else math.nan
    out["max"] = values[-1] * 1e3 if values else math.nan
    return out


@dataclass
class OpRecord:
    """Everything observed for one operation kind (e.g. ``predict``, ``ws_feed``)."""

    latencies_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    stream_wps: list[float] = field(default_factory=list)
    tokens: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    errors_by_status: Counter[int] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    def merge(self, other: OpRecord) -> None:
        self.latencies_s.extend(other.latencies_s)
        self.ttft_s.extend(other.ttft_s)
        self.stream_wps.extend(other.stream_wps)
        self.tokens += other.tokens
        self.errors_by_code.update(other.errors_by_code)
        self.errors_by_status.update(other.errors_by_status)

    def to_raw(self) -> dict[str, Any]:
        return {
            "latencies_s": self.latencies_s,
            "ttft_s": self.ttft_s,
            "stream_wps": self.stream_wps,
            "tokens": self.tokens,
            "errors_by_code": dict(self.errors_by_code),
            "errors_by_status": {str(k): v for k, v in self.errors_by_status.items()},
        }

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> OpRecord:
        return cls(
            list(raw["latencies_s"]),
            list(raw["ttft_s"]),
            list(raw["stream_wps"]),
            int(raw["tokens"]),
            Counter(raw["errors_by_code"]),
            Counter({int(k): v for k, v in raw["errors_by_status"].items()}),
        )


class Recorder:
    """Collects outcomes per operation; requests started before the warm-up ends are dropped.

    Args:
        warmup_until_s: run-relative time (``perf_counter`` seconds since the start)
            before which outcomes are not recorded, so connection set-up and server
            warm-up do not pollute the measurement.
    """

    def __init__(self, warmup_until_s: float = 0.0) -> None:
        self.ops: dict[str, OpRecord] = {}
        self.warmup_until_s = warmup_until_s
        self.skipped_warmup = 0

    def _op(self, op: str) -> OpRecord:
        return self.ops.setdefault(op, OpRecord())

    def _counted(self, started_rel_s: float) -> bool:
        if started_rel_s < self.warmup_until_s:
            self.skipped_warmup += 1
            return False
        return True

    def ok(
        self,
        op: str,
        started_rel_s: float,
        latency_s: float,
        tokens: int = 0,
        ttft_s: float | None = None,
        stream_wps: float | None = None,
    ) -> None:
        """A success; ``latency_s`` runs from the *scheduled* start (open loop) or the send.

        ``tokens``, ``ttft_s`` (time to first word) and ``stream_wps`` (one stream's words
        per second after its first word) are for streamed generation.
        """
        if not self._counted(started_rel_s):
            return
        record = self._op(op)
        record.latencies_s.append(latency_s)
        record.tokens += tokens
        if ttft_s is not None:
            record.ttft_s.append(ttft_s)
        if stream_wps is not None:
            record.stream_wps.append(stream_wps)

    def error(self, op: str, started_rel_s: float, code: str, status: int = 0) -> None:
        """A failure by contract ``code`` (or ``client:...``) and HTTP ``status`` (0: none)."""
        if not self._counted(started_rel_s):
            return
        record = self._op(op)
        record.errors_by_code[code] += 1
        record.errors_by_status[status] += 1

    def merge(self, other: Recorder) -> None:
        self.skipped_warmup += other.skipped_warmup
        for op, record in other.ops.items():
            self._op(op).merge(record)

    def to_raw(self) -> dict[str, Any]:
        return {
            "skipped_warmup": self.skipped_warmup,
            "ops": {op: record.to_raw() for op, record in self.ops.items()},
        }

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Recorder:
        recorder = cls()
        recorder.skipped_warmup = int(raw["skipped_warmup"])
        recorder.ops = {op: OpRecord.from_raw(rec) for op, rec in raw["ops"].items()}
        return recorder

    def total(self) -> OpRecord:
        """All non-setup operations merged: the row a sweep plots."""
        out = OpRecord()
        for op, record in self.ops.items():
            if op not in SETUP_OPS:
                out.merge(record)
        return out


def summarize_op(record: OpRecord, window_s: float, setup: bool = False) -> dict[str, Any]:
    """JSON-ready summary of one operation over a measurement window of ``window_s``.

    ``setup`` operations mostly ran before the window, so they get no throughput.
    """
    ok = len(record.latencies_s)
    window = window_s if window_s > 0 else math.nan
    out: dict[str, Any] = {
        "ok": ok,
        "errors": record.errors,
        "throughput_rps": None if setup else ok / window,
        "latency_ms": latency_summary_ms(record.latencies_s),
        "errors_by_code": dict(sorted(record.errors_by_code.items())),
        "errors_by_status": {str(k): v for k, v in sorted(record.errors_by_status.items())},
    }
    if record.ttft_s:
        out["ttft_ms"] = latency_summary_ms(record.ttft_s)
    if record.tokens:
        out["tokens"] = record.tokens
        out["tokens_per_s"] = record.tokens / window
    if record.stream_wps:
        rates = sorted(record.stream_wps)
        # p10 of a rate is its slow tail, the streams a user would notice stuttering.
        out["stream_words_per_s"] = {"p50": percentile(rates, 50), "p10": percentile(rates, 10)}
    return out


def summarize(recorder: Recorder, window_s: float) -> dict[str, dict[str, Any]]:
    """Per-operation summaries plus the ``total`` row of the operations under test."""
    out = {
        op: summarize_op(rec, window_s, op in SETUP_OPS) for op, rec in sorted(recorder.ops.items())
    }
    out[TOTAL] = summarize_op(recorder.total(), window_s)
    return out
