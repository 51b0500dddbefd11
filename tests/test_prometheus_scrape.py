"""A real Prometheus scrapes a real lstm-serve, and the dashboard's latency query works.

Starts the server (tiny random checkpoint) and Debian's ``prometheus`` on 127.0.0.1 with a
1 s scrape interval and the alert rules of deploy/prometheus/alerts.yml, sends requests,
and asks Prometheus's HTTP API that the target is up, that the p50 latency query returns a
number, and that every alert rule evaluates without error. Bounded in time; Prometheus is
stopped at the end.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import free_port, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
P50_QUERY = (
    "histogram_quantile(0.5, sum(rate(lstm_serve_request_duration_seconds_bucket[30s])) by (le))"
)
DEADLINE_S = 60.0


def prometheus_config(target_port: int) -> str:
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: lstm-serve
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
"""


@contextlib.contextmanager
def running_prometheus(config: str, directory: Path) -> Iterator[str]:
    """Run ``prometheus`` on a free loopback port; yield its base URL; stop it on exit."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (deploy/ci-setup.sh installs it)")
    config_path = directory / "prometheus.yml"
    config_path.write_text(config)
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(url), 30.0, "Prometheus ready", process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    return False


def wait_for(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path else ""
            raise AssertionError(f"{what}: process exited {process.returncode}\n{log}")
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s")


def query(url: str, promql: str) -> list[dict]:
    response = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_lstm_serve(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint)}
    with (
        running_server(env, tmp_path / "server.log") as server,
        running_prometheus(prometheus_config(server.port), tmp_path) as prometheus,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):

        def target_up() -> bool:
            return any(r["value"][1] == "1" for r in query(prometheus, 'up{job="lstm-serve"}'))

        wait_for(target_up, 30.0, "scrape target up")
        assert [r["value"][1] for r in query(prometheus, "lstm_serve_ready")] == ["1"]

        p50: list[float] = []

        def latency_known() -> bool:
            for text in ("the clouds are in the", "stocks fell", ""):
                response = client.post("/v1/predict", json={"text": text, "k": 3})
                assert response.status_code == 200, response.text
            result = query(prometheus, P50_QUERY)
            values = [float(r["value"][1]) for r in result]
            p50[:] = [v for v in values if math.isfinite(v)]
            return bool(p50)

        wait_for(latency_known, DEADLINE_S, f"a number from {P50_QUERY}")
        assert 0 < p50[0] < 10, p50

        assert fetch_rules(prometheus), "alerts.yml was not loaded"
        wait_for(
            lambda: all(r["health"] != "unknown" for r in fetch_rules(prometheus)),
            10.0,
            "every alert rule evaluated",
        )
        broken = {
            r["name"]: r.get("lastError") for r in fetch_rules(prometheus) if r["health"] != "ok"
        }
        assert not broken, broken


def fetch_rules(url: str) -> list[dict]:
    groups = httpx.get(url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]
