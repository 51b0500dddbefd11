"""Load shedding on event-loop lag: the sampler, and 429s from a real server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.load_shedding import LoopLag
from service.metrics import Metrics


def _lag(threshold_s: float) -> LoopLag:
    metrics = Metrics()
    return LoopLag(threshold_s, metrics.loop_lag, metrics.loop_lag_samples)


def test_lagging_only_past_a_positive_threshold() -> None:
    lag = _lag(0.1)
    lag.observe(0.05)
    assert not lag.lagging
    lag.observe(0.2)
    assert lag.lagging and lag.gauge._value.get() == pytest.approx(0.2)
    lag.observe(0.01)
    assert not lag.lagging  # recovers as soon as the loop catches up
    never = _lag(0.0)
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


@pytest.mark.integration
def test_lagging_server_sheds_work_but_answers_reads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A threshold below any real lag makes every sample count as lagging."""
    from tests.serverproc import running_server

    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_SHED_LOOP_LAG_MS": "1e-6"}
    with running_server(env, tmp_path / "server.log") as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        time.sleep(0.05)  # a first lag sample
        answer = client.post("/v1/predict", json={"text": "the company"})
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "overloaded"
        feed = client.post("/v1/sessions/abc/feed", json={"text": "the"})
        assert feed.status_code == 429
        assert client.get("/v1/models").status_code == 200
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").text
        client.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["lstm_serve_shed_requests"].samples[0].value >= 2
    statuses = {
        (s.labels["route"], s.labels["status"])
        for s in families["lstm_serve_requests"].samples
        if s.name == "lstm_serve_requests_total"
    }
    assert ("/v1/predict", "429") in statuses
    assert ("/v1/sessions/{session_id}/feed", "429") in statuses
    assert families["lstm_serve_event_loop_lag_seconds"].samples[0].value > 0
