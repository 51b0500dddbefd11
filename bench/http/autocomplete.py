"""Autocomplete trace: each sentence sent word by word as a growing prefix to /v1/predict.

An autocomplete client re-sends its whole text at every keystroke ("the", "the company",
"the company said", …), which is what the engine's prefix-state cache is for. This runs
the trace (the first ``--sentences`` PTB-valid sentences, ``--clients`` concurrent typists,
each sending its sentence's prefixes in order) against a server, or, with ``--compare``,
against two servers started one after the other from the same checkpoint: the cache off
(``LSTM_SERVE_PREFIX_CACHE_BYTES=0``) and on. It reports requests/s, p50 and p99 latency
and the largest log-prob difference between the two runs' answers (the cache must not
change any).

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

from bench.serverproc import ROOT, running_server

DEFAULT_TEXT = Path("/work/shared/data/ptb/ptb.valid.txt")
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
    cache_metrics: list[str] = field(default_factory=list)

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
        }


async def run_trace(url: str, sentences: list[list[str]], clients: int, k: int = 5) -> RunResult:
    """``clients`` typists; each takes the next sentence and sends its prefixes in order."""
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
        started = time.perf_counter()
        await asyncio.gather(*(typist(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return RunResult(len(latencies), elapsed, latencies, answers)


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


def compare(
    model: Path, sentences: list[list[str]], clients: int, cache_bytes: int
) -> dict[str, object]:
    """The trace against a cache-off and a cache-on server, one after the other."""
    results: dict[str, RunResult] = {}
    logs = Path(tempfile.mkdtemp(prefix="autocomplete-"))
    for name, budget in (("cache_off", 0), ("cache_on", cache_bytes)):
        env = {"LSTM_SERVE_MODEL_PATH": str(model), "LSTM_SERVE_PREFIX_CACHE_BYTES": str(budget)}
        with running_server(env, logs / f"{name}.log") as server:
            asyncio.run(run_trace(server.url, sentences[:clients], clients))  # warm-up
            results[name] = asyncio.run(run_trace(server.url, sentences, clients))
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
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
    args = parser.parse_args()
    sentences = trace(args.text, args.sentences)
    if args.compare:
        report = compare(args.model, sentences, args.clients, args.cache_bytes)
    elif args.url:
        report = asyncio.run(run_trace(args.url, sentences, args.clients)).summary()
    else:
        parser.error("give --url or --compare")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
