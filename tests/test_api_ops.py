"""Metrics (real parser + promtool), auth isolation, overload, and drain on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.serverproc import running_server, start_server

pytestmark = pytest.mark.integration

REQUIRED_METRICS = {
    "lstm_serve_requests": "counter",
    "lstm_serve_request_duration_seconds": "histogram",
    "lstm_serve_queue_depth": "gauge",
    "lstm_serve_batch_size": "histogram",
    "lstm_serve_batch_compute_seconds": "histogram",
    "lstm_serve_tokens": "counter",
    "lstm_serve_sessions_live": "gauge",
    "lstm_serve_streams_open": "gauge",
    "lstm_serve_sessions_created": "counter",
    "lstm_serve_sessions_expired": "counter",
    "lstm_serve_model_info": "gauge",
    "lstm_serve_errors": "counter",
}


def test_metrics_parse_and_count(client: httpx.Client) -> None:
    client.post("/v1/predict", json={"text": "the"})
    client.post("/v1/predict", json={"text": 5})
    client.post("/v1/sessions", json={})
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in REQUIRED_METRICS.items():
        assert name in families and families[name].type == kind, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    ok = (
        "lstm_serve_requests_total",
        (("method", "POST"), ("route", "/v1/predict"), ("status", "200")),
    )
    assert samples[ok] >= 1
    assert samples[("lstm_serve_errors_total", (("code", "invalid_request"),))] >= 1
    info = next(s for s in families["lstm_serve_model_info"].samples)
    assert info.labels["device"] == "cpu" and info.labels["architecture"] == "lstm"
    assert samples[("lstm_serve_sessions_created_total", ())] >= 1
    assert not any("session_id" in s.labels for f in families.values() for s in f.samples)


def test_promtool_accepts_metrics(client: httpx.Client) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    client.post("/v1/predict", json={"text": "the"})
    text = client.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_auth_isolates_keys(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_API_KEYS": "key-a, key-b"}
    with running_server(env, tmp_path / "auth.log") as server:
        a = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer key-a"})
        b = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer key-b"})
        anonymous = httpx.Client(base_url=server.url)
        for response in (
            anonymous.post("/v1/predict", json={"text": "a"}),
            anonymous.get("/v1/models"),
            httpx.post(
                server.url + "/v1/predict",
                json={"text": "a"},
                headers={"Authorization": "Bearer wrong"},
            ),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        # Every /v1 route starts with ``deps.admit`` (a call, not a declared dependency):
        # one that forgot it would answer an anonymous caller with something else.
        paths = a.get("/openapi.json").json()["paths"]
        v1 = [(m, p) for p, ops in paths.items() if p.startswith("/v1/") for m in ops]
        assert len(v1) >= 12
        for method, path in v1:
            url = path.replace("{session_id}", "s-none")
            response = anonymous.request(method.upper(), url, json={"text": "a"})
            assert (method, path, response.status_code) == (method, path, 401)
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        sid = a.post("/v1/sessions", json={"text": "the"}).json()["session_id"]
        assert a.get(f"/v1/sessions/{sid}").status_code == 200
        for response in (
            b.get(f"/v1/sessions/{sid}"),
            b.post(f"/v1/sessions/{sid}/feed", json={"text": "x"}),
            b.delete(f"/v1/sessions/{sid}"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "session_not_found"
        with connect(f"{server.ws_url}/v1/stream?session_id={sid}") as ws:
            assert '"unauthorized"' in ws.recv(timeout=10)
        with connect(f"{server.ws_url}/v1/stream?session_id={sid}&access_token=key-b") as ws:
            assert '"session_not_found"' in ws.recv(timeout=10)
        with connect(
            f"{server.ws_url}/v1/stream?session_id={sid}",
            additional_headers={"Authorization": "Bearer key-a"},
        ) as ws:
            assert '"ready"' in ws.recv(timeout=10)
        with connect(f"{server.ws_url}/v1/stream?session_id={sid}&access_token=key-a") as ws:
            assert '"ready"' in ws.recv(timeout=10)


def test_overload_gives_fast_429_and_stays_ready(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_MAX_QUEUE": "2",
        "LSTM_SERVE_MAX_BATCH_SIZE": "1",
    }
    text = " ".join(["the market"] * 9000)
    with running_server(env, tmp_path / "overload.log") as server:
        statuses: list[tuple[int, float, str | None]] = []

        def hit() -> None:
            started = time.monotonic()
            response = httpx.post(server.url + "/v1/score", json={"text": text}, timeout=60)
            statuses.append(
                (
                    response.status_code,
                    time.monotonic() - started,
                    response.headers.get("retry-after"),
                )
            )

        threads = [threading.Thread(target=hit) for _ in range(24)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        assert httpx.get(server.url + "/readyz").status_code == 200
        for thread in threads:
            thread.join()
        rejected = [s for s in statuses if s[0] == 429]
        assert rejected, statuses
        assert {s[0] for s in statuses} <= {200, 429}, statuses
        assert all(s[2] == "1" for s in rejected)
        assert httpx.get(server.url + "/readyz").status_code == 200


def _queue_depth(url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        if family.name == "lstm_serve_queue_depth":
            return family.samples[0].value
    return 0.0


def test_drain_on_sigterm_loses_no_request(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {
        "LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint),
        "LSTM_SERVE_MAX_BATCH_SIZE": "1",
        "LSTM_SERVE_DRAIN_TIMEOUT_S": "60",
    }
    server = start_server(env, tmp_path / "drain.log")
    try:
        with connect(f"{server.ws_url}/v1/stream") as ws:
            ws.recv(timeout=10)
            text = " ".join(["the market"] * 9000)
            results: list[int] = []

            def slow() -> None:
                response = httpx.post(server.url + "/v1/score", json={"text": text}, timeout=120)
                results.append(response.status_code)

            threads = [threading.Thread(target=slow) for _ in range(4)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while _queue_depth(server.url) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # wait until the requests are really in the server's queue
            assert _queue_depth(server.url) >= 2
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = httpx.get(server.url + "/readyz")
            assert ready.status_code == 503 and ready.json()["reason"] == "draining"
            refused = httpx.post(server.url + "/v1/predict", json={"text": "a"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            for thread in threads:
                thread.join()
            assert results == [200, 200, 200, 200]
        assert server.process.wait(timeout=60) == 0
    finally:
        server.stop(signal.SIGKILL)
