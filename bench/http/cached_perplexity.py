"""A whole split fed over HTTP through one cached session: the served cached perplexity.

python -m bench.http.cached_perplexity [--model models/default] [--data ../shared/data/ptb]
    [--split test] [--lines-per-feed 8]

Starts a real server on 127.0.0.1, creates one session with ``{"cache": true}`` and one
without, feeds both the whole split (a few sentences per ``POST /v1/sessions/{id}/feed``,
state and cache carried across sentences as the paper does) and prints the perplexity from
the feeds' ``logprob`` sums next to the card's offline numbers (``models.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import httpx

from bench.serverproc import running_server


def feed_split(url: str, lines: list[str], per_feed: int, cache: bool) -> tuple[float, int]:
    """(perplexity, tokens) of ``lines`` fed through one session."""
    with httpx.Client(base_url=url, timeout=120) as http:
        made = http.post("/v1/sessions", json={"cache": cache, "k": 1})
        made.raise_for_status()
        session = made.json()["session_id"]
        total, position = 0.0, 0
        for start in range(0, len(lines), per_feed):
            text = "".join(line + "\n" for line in lines[start : start + per_feed])
            fed = http.post(f"/v1/sessions/{session}/feed", json={"text": text, "k": 1})
            fed.raise_for_status()
            answer = fed.json()
            total, position = total + answer["logprob"], answer["position"]
        http.delete(f"/v1/sessions/{session}")
    return math.exp(-total / position), position


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ptb"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--lines-per-feed", type=int, default=8)
    args = parser.parse_args()
    lines = (args.data / f"ptb.{args.split}.txt").read_text().splitlines()
    card = json.loads((args.model / "config.json").read_text())["card"]
    env = {
        "LSTM_SERVE_MODEL_PATH": str(args.model.resolve()),
        "LSTM_SERVE_MAX_TEXT_CHARS": "100000",
    }
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_server(env, Path(scratch) / "server.log") as server,
    ):
        rows = []
        for cache in (False, True):
            started = time.perf_counter()
            perplexity, tokens = feed_split(server.url, lines, args.lines_per_feed, cache)
            rows.append((cache, perplexity, tokens, time.perf_counter() - started))
    offline = {
        False: card.get(f"{args.split}_perplexity"),
        True: card.get(f"{args.split}_perplexity_cache"),
    }
    print(f"| {args.model} {args.split} | tokens | served perplexity | offline (card) | diff | s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cache, perplexity, tokens, seconds in rows:
        reference = offline[cache]
        diff = f"{perplexity / reference - 1:+.2%}" if reference else "-"
        name = "session with cache" if cache else "session without cache"
        print(f"| {name} | {tokens} | {perplexity:.2f} | {reference} | {diff} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
