"""The engine's Prometheus metrics: queue, batches, tokens, sessions, session store.

They live on a registry the caller hands in (the shell's; in tests a fresh one). When the
shell runs several processes it sets prometheus_client's multiprocess directory, and these
values land there, next to the API processes' own, for one ``/metrics``; gauges say how
values of several processes combine (the engine is one process: ``mostrecent``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
ONE_PROCESS: Final = "mostrecent"  # the engine's gauges have one writer


class EngineMetrics:
    """Every metric the engine process exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._queue_and_batches()
        self._sessions()
        self._prefix_cache()
        self._store()

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode=ONE_PROCESS)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _queue_and_batches(self) -> None:
        self.queue_depth = self._gauge(
            "lstm_serve_queue_depth", "Work items waiting for the inference worker"
        )
        self.queue_capacity = self._gauge(
            "lstm_serve_queue_capacity", "Most work items allowed to wait (LSTM_SERVE_MAX_QUEUE)"
        )
        self.batch_size = Histogram(
            "lstm_serve_batch_size",
            "Rows advanced together in one model step, by work kind",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_compute = Histogram(
            "lstm_serve_batch_compute_seconds",
            "Model compute time of one batch, by work kind",
            ["kind"],
            buckets=COMPUTE_BUCKETS_S,
            registry=self.registry,
        )
        self.tokens = self._counter(
            "lstm_serve_tokens_total", "Tokens run through the model, by work kind", ("kind",)
        )
        self.model_info = self._gauge(
            "lstm_serve_model_info",
            "The served model (value is always 1)",
            ("model_id", "architecture", "device"),
        )

    def _sessions(self) -> None:
        self.sessions_live = self._gauge("lstm_serve_sessions_live", "Sessions currently held")
        self.sessions_capacity = self._gauge(
            "lstm_serve_sessions_capacity", "Most sessions allowed (LSTM_SERVE_MAX_SESSIONS)"
        )
        self.sessions_created = self._counter(
            "lstm_serve_sessions_created_total", "Sessions created"
        )
        self.sessions_expired = self._counter(
            "lstm_serve_sessions_expired_total", "Sessions removed by idle TTL expiry"
        )
        self.sessions_resumed = self._counter(
            "lstm_serve_sessions_resumed_total",
            "Sessions loaded back from the session store into the state pool",
        )
        self.sessions_evicted = self._counter(
            "lstm_serve_sessions_evicted_total",
            "Idle sessions moved out of the state pool to the session store",
        )
        self.session_state_ops = self._counter(
            "lstm_serve_session_state_ops_total",
            "Session state operations, by kind (fork, rewind, export, import)",
            ("kind",),
        )

    def _prefix_cache(self) -> None:
        self.prefix_cache_requests = self._counter(
            "lstm_serve_prefix_cache_requests_total",
            "Stateless requests that looked up the prefix-state cache, by result (hit, miss)",
            ("result",),
        )
        self.prefix_cache_tokens_saved = self._counter(
            "lstm_serve_prefix_cache_tokens_saved_total",
            "Prompt tokens not run because their state came from the prefix cache",
        )
        self.prefix_cache_evictions = self._counter(
            "lstm_serve_prefix_cache_evictions_total", "Prefix-cache entries evicted (LRU)"
        )
        self.prefix_cache_bytes = self._gauge(
            "lstm_serve_prefix_cache_bytes",
            "State bytes held by the prefix cache (LSTM_SERVE_PREFIX_CACHE_BYTES)",
        )
        self.session_history_bytes = self._gauge(
            "lstm_serve_session_history_bytes",
            "State pool bytes held by rewind histories (LSTM_SERVE_SESSION_HISTORY)",
        )
        self.session_cache_bytes = self._gauge(
            "lstm_serve_session_cache_bytes",
            "Bytes held by sessions' continuous caches (budget LSTM_SERVE_MAX_CACHE_BYTES)",
        )
        self.session_cache_capacity_bytes = self._gauge(
            "lstm_serve_session_cache_capacity_bytes",
            "Most bytes sessions' continuous caches may hold (LSTM_SERVE_MAX_CACHE_BYTES)",
        )
        self.sessions_cached = self._gauge(
            "lstm_serve_sessions_cached", "Live sessions that keep a continuous cache"
        )

    def _store(self) -> None:
        self.session_store_errors = self._counter(
            "lstm_serve_session_store_errors_total",
            "Session store failures, by kind (unavailable, conflict)",
            ("kind",),
        )
        self.session_store_latency = Histogram(
            "lstm_serve_session_store_save_seconds",
            "Time to store one session state",
            buckets=COMPUTE_BUCKETS_S,
            registry=self.registry,
        )
