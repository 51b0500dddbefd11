"""Load shedding on event-loop lag: the sampler, and 429s from a real server."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.load_shedding import LoopLag
from service.api.metrics import ApiMetrics as Metrics


def _lag(threshold_s: float) -> LoopLag:
    metrics = Metrics()
    return LoopLag(threshold_s, metrics.loop_lag, metrics.loop_lag_samples)


def test_lagging_only_when_every_recent_sample_is_past_the_threshold() -> None:
    lag = _lag(0.1)
    lag.observe(0.5)  # one slow iteration (a GC pause, one big batch) is not a backlog
    assert not lag.lagging and lag.gauge._value.get() == pytest.approx(0.5)
    lag.observe(0.2)
    assert not lag.lagging
    lag.observe(0.3)
    assert lag.lagging  # three samples in a row past it: a standing backlog
    lag.observe(0.01)
    assert not lag.lagging  # recovers as soon as the loop catches up
    never = _lag(0.0)
    for _ in range(5):
        never.observe(5.0)
    assert not never.lagging


def test_a_blocked_loop_is_measured() -> None:
    async def scenario() -> float:
        lag = _lag(0.1)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the loop is stuck: nothing else runs
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag.histogram.collect()[0].samples  # type: ignore[return-value]

    samples = asyncio.run(scenario())
    count = next(s.value for s in samples if s.name.endswith("_count"))
    over_100ms = count - next(
        s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "0.1"
    )
    assert count >= 3 and over_100ms >= 1


def test_a_lagging_loop_sheds_work_but_answers_reads() -> None:
    """Admission in process (no lifespan, so no sampler overwrites the samples, and no
    engine is needed: the 429 comes before any engine call)."""
    from service.api.app import create_app
    from service.settings import Settings

    app = create_app(Settings(shed_loop_lag_ms=50), "ipc:///nonexistent/engine.sock")
    for _ in range(3):
        app.state.loop_lag.observe(0.5)

    async def scenario() -> tuple[httpx.Response, ...]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (
                await client.post("/v1/predict", json={"text": "the company"}),
                await client.post("/v1/sessions/abc/feed", json={"text": "the"}),
                await client.get("/healthz"),
                await client.get("/metrics"),
            )

    predict, feed, health, metrics = asyncio.run(scenario())
    assert predict.status_code == 429 and feed.status_code == 429
    assert predict.headers["retry-after"] == "1"
    assert predict.json()["error"]["code"] == "overloaded"
    assert health.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    assert families["lstm_serve_shed_requests"].samples[0].value == 2
    statuses = {
        (s.labels["route"], s.labels["status"])
        for s in families["lstm_serve_requests"].samples
        if s.name == "lstm_serve_requests_total"
    }
    assert ("/v1/predict", "429") in statuses
    assert ("/v1/sessions/{session_id}/feed", "429") in statuses


@pytest.mark.integration
def test_a_real_server_samples_its_loop_lag(server) -> None:
    """The sampler runs in the served process; light traffic sheds nothing."""
    for _ in range(3):
        assert httpx.post(server.url + "/v1/predict", json={"text": "the"}).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = families["lstm_serve_event_loop_lag_samples_seconds"].samples
    assert next(s.value for s in samples if s.name.endswith("_count")) > 0
    assert families["lstm_serve_shed_requests"].samples[0].value == 0
