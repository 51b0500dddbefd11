"""Autocomplete trace: each sentence sent word by word as a growing prefix to /v1/predict.

An autocomplete client re-sends its whole text at every keystroke ("the", "the company",
"the company said", …), which is what the engine's prefix-state cache is for. This runs
the trace (the first ``--sentences`` PTB-valid sentences, ``--clients`` concurrent typists,
each sending its sentence's prefixes in order) against a server, or, with ``--compare``,
against two servers started one after the other from the same checkpoint: the cache off
(``LSTM_SERVE_PREFIX_CACHE_BYTES=0``) and on. It reports requests/s, p50 and p99 latency
and the largest log-prob difference between the two runs' answers (the cache must not
change any), plus the client's CPU and each server process's CPU during the run (share of
one CPU, from /proc) and the server CPU per request. The warm-up uses sentences that are
not measured (they would be cache hits).

The client is a minimal keep-alive HTTP/1.1 client on raw asyncio streams (about 0.1 ms
of CPU per request); ``--client httpx`` is the first version, which needed 5-7 ms of CPU
per request and so capped the trace near 100 requests/s on a 2-core machine, whatever the
server (the "server at 30 % CPU" of issue #14).

    python -m bench.http.autocomplete --compare --model models/default --sentences 1000
    python -m bench.http.autocomplete --url http://127.0.0.1:8000 --sentences 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.proc_cpu import cpu_delta, tree_cpu
from bench.serverproc import ROOT, running_server

DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "ptb" / "ptb.valid.txt"
Answer = list[tuple[str, float]]


def trace(path: Path, sentences: int) -> list[list[str]]:
    """Per sentence, its growing prefixes: ``["the", "the company", ...]``."""
    out: list[list[str]] = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words:
            out.append([" ".join(words[:n]) for n in range(1, len(words) + 1)])
        if len(out) == sentences:
            break
    return out


@dataclass
class RunResult:
    requests: int
    elapsed_s: float
    latencies_s: list[float]
    answers: dict[str, Answer]
    client_cpu: float = 0.0  # share of one CPU the client used
    cache_metrics: list[str] = field(default_factory=list)
    server_cpu: dict[str, float] = field(default_factory=dict)
    rows_per_step: float = 0.0  # mean rows of the engine's model steps during the run

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "req_per_s": round(self.rps, 1),
            "p50_ms": round(self.percentile_ms(0.5), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "mean_ms": round(1000 * statistics.fmean(self.latencies_s), 2),
            "client_cpu": round(self.client_cpu, 3),
            "server_cpu": self.server_cpu,
            "server_cpu_ms_per_request": round(self.server_cpu_ms_per_request, 3),
            "rows_per_step": round(self.rows_per_step, 1),
        }

    @property
    def server_cpu_ms_per_request(self) -> float:
        """Server CPU per answer: what bounds throughput when the server's CPUs are busy
        (steadier than requests/s on a machine others share)."""
        return 1000 * self.server_cpu.get("total", 0.0) / self.rps


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON: a fraction of httpx's CPU per
    request, so that the client stays far faster than the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        return cls(*await asyncio.open_connection(host, int(port or 80)))

    async def post(self, path: str, payload: object) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def run_trace(url: str, sentences: list[list[str]], clients: int, k: int = 5) -> RunResult:
    """``clients`` typists; each takes the next sentence and sends its prefixes in order."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for prefixes in sentences:
        queue.put_nowait(prefixes)
    latencies: list[float] = []
    answers: dict[str, Answer] = {}

    async def typist(connection: Connection) -> None:
        while not queue.empty():
            for prefix in queue.get_nowait():
                started = time.perf_counter()
                status, body = await connection.post("/v1/predict", {"text": prefix, "k": k})
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                predictions = json.loads(body)["predictions"]
                answers[prefix] = [(p["word"], p["logprob"]) for p in predictions]

    connections = [await Connection.open(url) for _ in range(clients)]
    cpu0, started = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(typist(c) for c in connections))
    finally:
        for c in connections:
            c.close()
    elapsed = time.perf_counter() - started
    cpu = (time.process_time() - cpu0) / elapsed
    return RunResult(len(latencies), elapsed, latencies, answers, client_cpu=cpu)


async def run_trace_httpx(
    url: str, sentences: list[list[str]], clients: int, k: int = 5
) -> RunResult:
    """``run_trace`` with an httpx client (the first version; CPU-bound on 2 cores)."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for prefixes in sentences:
        queue.put_nowait(prefixes)
    latencies: list[float] = []
    answers: dict[str, Answer] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def typist(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            for prefix in queue.get_nowait():
                started = time.perf_counter()
                response = await http.post("/v1/predict", json={"text": prefix, "k": k})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                predictions = response.json()["predictions"]
                answers[prefix] = [(p["word"], p["logprob"]) for p in predictions]

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(typist(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    cpu = (time.process_time() - cpu0) / elapsed
    return RunResult(len(latencies), elapsed, latencies, answers, client_cpu=cpu)


TRACES = {"raw": run_trace, "httpx": run_trace_httpx}


def largest_difference(a: dict[str, Answer], b: dict[str, Answer]) -> tuple[float, int]:
    """(largest |Δ log-prob| position by position, answers whose words differ beyond a
    near-tie: words may swap places only where their log-probs are within 1e-5)."""
    worst, mismatched = 0.0, 0
    for prefix, left in a.items():
        right = b[prefix]
        deltas = [abs(x - y) for (_, x), (_, y) in zip(left, right, strict=True)]
        worst = max([worst, *deltas])
        for (word_a, x), (word_b, _) in zip(left, right, strict=True):
            ties = {w for w, lp in right if abs(lp - x) <= 1e-5}
            if word_a != word_b and word_a not in ties:
                mismatched += 1
                break
    return worst, mismatched


def batch_rows_and_steps(metrics: str) -> tuple[float, float]:
    """Rows and model steps so far, summed over step kinds (``lstm_serve_batch_size``)."""
    rows = steps = 0.0
    for family in text_string_to_metric_families(metrics):
        if family.name == "lstm_serve_batch_size":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    rows += sample.value
                elif sample.name.endswith("_count"):
                    steps += sample.value
    return rows, steps


def measured(
    url: str, pid: int, sentences: list[list[str]], clients: int, client: str
) -> RunResult:
    """One run of the trace, with the CPU share of each server process meanwhile."""
    before, started = tree_cpu(pid), time.perf_counter()
    result = asyncio.run(TRACES[client](url, sentences, clients))
    result.server_cpu = cpu_delta(before, tree_cpu(pid), time.perf_counter() - started)
    return result


def compare(
    model: Path,
    sentences: list[list[str]],
    warm_up: list[list[str]],
    clients: int,
    cache_bytes: int,
    client: str = "raw",
) -> dict[str, object]:
    """The trace against a cache-off and a cache-on server, one after the other. The
    warm-up sentences are not among the measured ones (they would be cache hits)."""
    results: dict[str, RunResult] = {}
    logs = Path(tempfile.mkdtemp(prefix="autocomplete-"))
    for name, budget in (("cache_off", 0), ("cache_on", cache_bytes)):
        env = {"LSTM_SERVE_MODEL_PATH": str(model), "LSTM_SERVE_PREFIX_CACHE_BYTES": str(budget)}
        with running_server(env, logs / f"{name}.log") as server:
            asyncio.run(TRACES[client](server.url, warm_up, clients))
            pid = server.process.pid
            steps_before = batch_rows_and_steps(httpx.get(server.url + "/metrics").text)
            results[name] = measured(server.url, pid, sentences, clients, client)
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
            (rows_0, steps_0), (rows_1, steps_1) = steps_before, batch_rows_and_steps(metrics)
            rows, steps = rows_1 - rows_0, steps_1 - steps_0
            results[name].rows_per_step = rows / max(1.0, steps)
        results[name].cache_metrics = [
            line for line in metrics.splitlines() if line.startswith("lstm_serve_prefix_cache")
        ]
    worst, mismatched = largest_difference(
        results["cache_off"].answers, results["cache_on"].answers
    )
    off, on = results["cache_off"], results["cache_on"]
    return {
        "sentences": len(sentences),
        "clients": clients,
        "cache_off": off.summary(),
        "cache_on": on.summary(),
        "speedup": round(on.rps / off.rps, 2),
        "p50_ratio": round(on.percentile_ms(0.5) / off.percentile_ms(0.5), 2),
        "server_cpu_per_request_ratio": round(
            off.server_cpu_ms_per_request / on.server_cpu_ms_per_request, 2
        ),
        "max_abs_logprob_difference": worst,
        "answers_with_other_words_beyond_ties": mismatched,
        "cache_metrics": on.cache_metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (otherwise --compare starts two)")
    parser.add_argument("--compare", action="store_true", help="cache off vs on, same run")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--cache-bytes", type=int, default=256 << 20)
    parser.add_argument("--client", choices=sorted(TRACES), default="raw")
    args = parser.parse_args()
    everything = trace(args.text, args.sentences + args.clients)
    sentences, warm_up = everything[: args.sentences], everything[args.sentences :]
    if args.compare:
        report = compare(
            args.model, sentences, warm_up, args.clients, args.cache_bytes, args.client
        )
    elif args.url:
        report = asyncio.run(TRACES[args.client](args.url, sentences, args.clients)).summary()
    else:
        parser.error("give --url or --compare")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
