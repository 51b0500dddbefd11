"""The API processes' Prometheus metrics: requests, errors, streams, event-loop lag.

Several API processes may run; in the shell's multiprocess mode their counters and
histograms add up, and each gauge says how the processes' values combine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """Every metric an API process exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._requests(self.registry)
        self._process(self.registry)

    def _requests(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "lstm_serve_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "lstm_serve_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.errors = Counter(
            "lstm_serve_errors_total",
            "Error responses and messages by contract error code",
            ["code"],
            registry=r,
        )

    def _process(self, r: CollectorRegistry) -> None:
        self.loop_lag = Gauge(
            "lstm_serve_event_loop_lag_seconds",
            "How late the event loop ran its last 10 ms timer (requests wait this long "
            "before being read); the worst API process",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.loop_lag_samples = Histogram(
            "lstm_serve_event_loop_lag_samples_seconds",
            "Event loop lag, sampled every 10 ms",
            buckets=LAG_BUCKETS_S,
            registry=r,
        )
        self.shed = Counter(
            "lstm_serve_shed_requests_total",
            "Work requests answered 429 at once because the event loop lagged",
            registry=r,
        )
        self.streams_open = Gauge(
            "lstm_serve_streams_open",
            "Open WebSocket streams (all API processes)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "lstm_serve_ready",
            "1 when the server is ready to take work, else 0",
            registry=r,
            multiprocess_mode="livemin",
        )
