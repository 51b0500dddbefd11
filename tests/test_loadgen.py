"""The load generator: stats, open-loop timing, error codes, and short runs on real sockets.

Nothing here needs lstm-serve itself: a tiny asyncio HTTP server (in-process) stands in
where timing or answers must be controlled, and ``uvicorn bench.http.echo_app:app`` where a
real server process is wanted. Every run is bounded to a second or two.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.loadgen import main
from bench.loadgen.config import RunConfig
from bench.loadgen.driver import arrival_offsets, run_worker
from bench.loadgen.runner import loop_in_use, merge
from bench.loadgen.stats import Recorder, percentile, summarize

ROOT = Path(__file__).resolve().parent.parent
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes, str]]]
SSE = b'data: {"word": "the", "index": 0}\n\ndata: {"finish_reason": "length"}\n\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TinyServer:
    """Keep-alive HTTP/1.1 on 127.0.0.1 whose answers and timing a test controls."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.arrivals: list[float] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.port = 0

    async def __aenter__(self) -> TinyServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.arrivals.append(time.perf_counter())
                self.requests.append((method, path, json.loads(body) if body else None))
                status, payload, ctype = await self.handler(method, path, body)
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\n"
                    f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def ok_json(body: dict[str, Any]) -> tuple[int, bytes, str]:
    return 200, json.dumps(body).encode(), "application/json"


def run_against(handler: Handler, **fields: Any) -> tuple[dict[str, Any], TinyServer]:
    """Run one bounded load on a :class:`TinyServer`; return the merged result."""

    async def go() -> tuple[dict[str, Any], TinyServer]:
        async with TinyServer(handler) as server:
            cfg = RunConfig(
                **{"grace_s": 5.0, "timeout_s": 5.0, **fields},
                url=f"http://127.0.0.1:{server.port}",
            )
            return merge(cfg, [await run_worker(cfg)]), server

    return asyncio.run(go())


def test_percentile_nearest_rank_hand_example() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 91) == 10.0
    assert percentile(values, 99.9) == 10.0
    assert percentile(values, 0) == 1.0
    assert percentile([0.25], 99) == 0.25
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_orders_percentiles_and_skips_warmup() -> None:
    recorder = Recorder(warmup_until_s=1.0)
    recorder.ok("predict", 0.5, 9.0)  # started in warm-up: not counted
    for i in range(1000):
        recorder.ok("predict", 1.0 + i / 1000, (i % 100 + 1) / 1000)
    recorder.error("predict", 2.0, "overloaded", 429)
    other = Recorder.from_raw(json.loads(json.dumps(recorder.to_raw())))  # as from a worker
    recorder.merge(other)
    summary = summarize(recorder, window_s=2.0)["predict"]
    lat = summary["latency_ms"]
    assert summary["ok"] == 2000 and summary["throughput_rps"] == 1000.0
    assert recorder.skipped_warmup == 2
    assert lat["p50"] == pytest.approx(50.0) and lat["max"] == pytest.approx(100.0)
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert summary["errors_by_code"] == {"overloaded": 2}
    assert summary["errors_by_status"] == {"429": 2}


def test_arrival_schedule_is_fixed_and_split_across_processes() -> None:
    uniform = list(islice(arrival_offsets(4.0, "uniform", 0), 5))
    assert uniform == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    take = 2000
    a = list(islice(arrival_offsets(100.0, "poisson", 3), take))
    b = list(islice(arrival_offsets(100.0, "poisson", 3), take))
    assert a == b and a[-1] / take == pytest.approx(0.01, rel=0.1)
    cfg = RunConfig(rate=90.0, requests=100, concurrency=10, processes=3)
    shares = [cfg.share(i, 3) for i in range(3)]
    assert sum(s.requests or 0 for s in shares) == 100 and sum(s.concurrency for s in shares) == 10
    merged = sorted(
        t for s in shares for t in islice(arrival_offsets(30, "uniform", 0, s.phase_s), 3)
    )
    assert merged == pytest.approx([i / 90.0 for i in range(9)])


def test_open_loop_sends_at_scheduled_times() -> None:
    async def fast(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        return ok_json({"predictions": []})

    result, server = run_against(fast, scenario="predict", rate=10.0, requests=8, concurrency=4)
    assert result["ops"]["predict"]["ok"] == 8
    offsets = [t - server.arrivals[0] for t in server.arrivals]
    assert offsets == pytest.approx([i / 10.0 for i in range(8)], abs=0.05)


def test_open_loop_latency_includes_queueing_behind_a_slow_server() -> None:
    """20 arrivals/s on a server that does 10/s: latency grows from the scheduled times.

    A closed-loop client (or an open-loop one that timed from the actual send) would
    report ~100 ms for every request here: coordinated omission.
    """
    lock = asyncio.Lock()

    async def slow(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        async with lock:
            await asyncio.sleep(0.1)
        return ok_json({"predictions": []})

    result, _ = run_against(slow, scenario="predict", rate=20.0, requests=12, concurrency=16)
    lat = result["ops"]["predict"]["latency_ms"]
    assert result["ops"]["predict"]["ok"] == 12
    assert lat["max"] > 450.0  # the 12th: scheduled at 0.55 s, served by ~1.2 s
    closed, _ = run_against(slow, scenario="predict", concurrency=1, requests=4)
    assert closed["ops"]["predict"]["latency_ms"]["max"] < 300.0


def test_hard_stop_cancels_outstanding_requests_as_unfinished() -> None:
    async def stuck(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        await asyncio.sleep(10.0)
        return ok_json({"predictions": []})

    started = time.monotonic()
    bounds = {"duration_s": 0.3, "grace_s": 0.3}
    closed, _ = run_against(stuck, scenario="predict", concurrency=2, **bounds)
    opened, _ = run_against(stuck, scenario="score", rate=20.0, concurrency=4, **bounds)
    assert time.monotonic() - started < 5.0
    assert closed["ops"]["predict"]["errors_by_code"] == {"client:unfinished": 2}
    assert opened["dispatched"] == 6
    assert opened["ops"]["score"]["errors_by_code"] == {"client:unfinished": 6}


def test_errors_are_counted_by_contract_code_and_status() -> None:
    answers = iter(
        [
            (429, b'{"error": {"code": "overloaded", "message": "full", "details": null}}'),
            (503, b'{"error": {"code": "not_ready", "message": "loading", "details": null}}'),
            (500, b"<html>oops</html>"),
            (200, b'{"no": "predictions"}'),
        ]
        * 3
    )

    async def failing(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        status, payload = next(answers)
        return status, payload, "application/json"

    result, _ = run_against(failing, scenario="predict", concurrency=1, requests=12)
    op = result["ops"]["predict"]
    assert op["ok"] == 0 and op["errors"] == 12
    assert op["errors_by_code"] == {
        "client:bad_body": 3,
        "http_500": 3,
        "not_ready": 3,
        "overloaded": 3,
    }
    assert op["errors_by_status"] == {"200": 3, "429": 3, "500": 3, "503": 3}


def test_connection_refused_is_a_client_error_and_exit_code_1(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{free_port()}"
    assert (
        main(["score", "--url", url, "--requests", "3", "--concurrency", "1", "--json", str(out)])
        == 1
    )
    run = json.loads(out.read_text())["runs"][0]
    assert run["ops"]["score"]["errors_by_code"] == {"client:connect": 3}
    assert run["ops"]["score"]["errors_by_status"] == {"0": 3}


def test_requests_follow_the_api_contract() -> None:
    """Paths and bodies of every HTTP scenario, as ``shared/API.md`` defines them."""

    async def api(method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        if path == "/v1/sessions":
            return 201, b'{"session_id": "s1", "position": 0}', "application/json"
        if path == "/v1/generate":
            return 200, SSE, "text/event-stream"
        return ok_json({"predictions": [], "logprob": -1.0})

    result, server = run_against(api, scenario="mix", concurrency=2, requests=40, seed=1)
    assert result["ops"]["total"]["ok"] == 40 and result["ops"]["total"]["errors"] == 0
    assert result["ops"]["generate"]["tokens"] == result["ops"]["generate"]["ok"]
    keys = {
        "/v1/predict": {"text", "k"},
        "/v1/score": {"text"},
        "/v1/sessions": {"k"},
        "/v1/sessions/s1/feed": {"text", "k"},
        "/v1/generate": {"text", "max_tokens", "temperature", "seed", "stream"},
    }
    seen = set()
    for method, path, body in server.requests:
        seen.add(path)
        if method == "DELETE":
            assert path == "/v1/sessions/s1" and body is None
            continue
        assert method == "POST" and set(body) == keys[path], (path, body)
        if path == "/v1/generate":
            assert body["stream"] is True
        if "text" in body:
            assert isinstance(body["text"], str) and body["text"]
    assert seen == {*keys, "/v1/sessions/s1"}


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.http.echo_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("echo app did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("scenario", "extra"),
    [
        ("predict", ["--concurrency", "4"]),
        ("ws", ["--concurrency", "4", "--processes", "2"]),
        ("ws", ["--concurrency", "4", "--loop", "asyncio"]),
        ("ws", ["--concurrency", "4", "--loop", "uvloop"]),
    ],
)
def test_bounded_run_against_echo_app(
    echo_url: str, tmp_path: Path, scenario: str, extra: list[str]
) -> None:
    out = tmp_path / "result.json"
    assert (
        main(
            [
                scenario,
                "--url",
                echo_url,
                "--requests",
                "200",
                "--duration-s",
                "5",
                "--json",
                str(out),
                *extra,
            ]
        )
        == 0
    )
    run = json.loads(out.read_text())["runs"][0]
    total = run["ops"]["total"]
    assert run["dispatched"] == 200 and total["ok"] == 200 and total["errors"] == 0
    lat = total["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert total["throughput_rps"] > 0 and run["client"]["cpu_s"] > 0
    assert len(run["client"]["cpu_util_per_process"]) == run["processes"]
    loop = extra[extra.index("--loop") + 1] if "--loop" in extra else loop_in_use("auto")
    assert run["loop"] == loop
