"""Prometheus metrics on an app-owned registry (never the global one).

Names follow Prometheus conventions: ``lstm_serve_`` prefix, base units (seconds),
``_total`` on counters, low-cardinality labels (route templates, never session ids).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMPUTE_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Every metric the server exports, registered on ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.queue_depth = Gauge(
            "lstm_serve_queue_depth", "Work items waiting for the inference worker", registry=r
        )
        self.queue_capacity = Gauge(
            "lstm_serve_queue_capacity",
            "Most work items allowed to wait (LSTM_SERVE_MAX_QUEUE)",
            registry=r,
        )
        self.batch_size = Histogram(
            "lstm_serve_batch_size",
            "Rows advanced together in one model step, by work kind",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_compute = Histogram(
            "lstm_serve_batch_compute_seconds",
            "Model compute time of one batch, by work kind",
            ["kind"],
            buckets=COMPUTE_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "lstm_serve_tokens_total",
            "Tokens run through the model, by work kind",
            ["kind"],
            registry=r,
        )
        self.sessions_live = Gauge(
            "lstm_serve_sessions_live", "Sessions currently held", registry=r
        )
        self.sessions_capacity = Gauge(
            "lstm_serve_sessions_capacity",
            "Most sessions allowed (LSTM_SERVE_MAX_SESSIONS)",
            registry=r,
        )
        self.sessions_created = Counter(
            "lstm_serve_sessions_created_total", "Sessions created", registry=r
        )
        self.sessions_expired = Counter(
            "lstm_serve_sessions_expired_total", "Sessions removed by idle TTL expiry", registry=r
        )
        self.sessions_resumed = Counter(
            "lstm_serve_sessions_resumed_total",
            "Sessions loaded back from the session store into the state pool",
            registry=r,
        )
        self.sessions_evicted = Counter(
            "lstm_serve_sessions_evicted_total",
            "Idle sessions moved out of the state pool to the session store",
            registry=r,
        )
        self.session_store_errors = Counter(
            "lstm_serve_session_store_errors_total",
            "Session store failures, by kind (unavailable, conflict)",
            ["kind"],
            registry=r,
        )
        self.session_store_latency = Histogram(
            "lstm_serve_session_store_save_seconds",
            "Time to store one session state",
            buckets=COMPUTE_BUCKETS_S,
            registry=r,
        )
        self.loop_lag = Gauge(
            "lstm_serve_event_loop_lag_seconds",
            "How late the event loop ran its last 10 ms timer (requests wait this long "
            "before being read)",
            registry=r,
        )
        self.loop_lag_samples = Histogram(
            "lstm_serve_event_loop_lag_samples_seconds",
            "Event loop lag, sampled every 10 ms",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.shed = Counter(
            "lstm_serve_shed_requests_total",
            "Work requests answered 429 at once because the event loop lagged",
            registry=r,
        )
        self.streams_open = Gauge("lstm_serve_streams_open", "Open WebSocket streams", registry=r)
        self.ready = Gauge(
            "lstm_serve_ready", "1 when the server is ready to take work, else 0", registry=r
        )
        self.model_info = Gauge(
            "lstm_serve_model_info",
            "The served model (value is always 1)",
            ["model_id", "architecture", "device"],
            registry=r,
        )
