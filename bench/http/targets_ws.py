"""Issue 13's WebSocket targets: 1,000 sessions back to back against the engine's own
feeds of the same words, and open loops at 80 % of the engine's and of the server's own
rate (``bench.http.targets`` runs this after its predict rounds)."""

from __future__ import annotations

import argparse
from typing import Any

from bench.http import orchestrator as orch
from bench.http import wsload
from bench.http.targets_common import RAW, engine_alone, lstm_serve, wait_quiet


def ws_part(args: argparse.Namespace) -> dict[str, Any]:
    """1,000 WebSocket sessions back to back vs the engine's own feeds of the same words
    (``--feed-words loadgen``), and of one PTB token each for reference; then open loop at
    80 % of the engine's rate (the target), and at 80 % of the server's own closed-loop
    rate (the usual way to read latency "at 80 % load", reported beside it).

    ``--ws-client c`` (the default) drives the loops with ``bench/wsload`` and also runs
    the closed loop once with the Python client (``closed_python``), so that what the
    client takes from the two cores shows beside the server's figure."""
    print("[ws]", flush=True)
    feeds = ["--feed-sessions", "1000", "--feed-concurrency", "1000"]
    feeds += ["--duration-s", str(args.duration_s)]
    out: dict[str, Any] = {"client": args.ws_client}
    for words in ("bodies", "loadgen"):
        run = engine_alone(args, f"engine-feeds-{words}", "feeds", [*feeds, "--feed-words", words])
        out["engine" if words == "loadgen" else "engine_one_token"] = engine = run["feeds"][0]
        print(
            f"  engine feeds ({words} words, {engine['tokens_per_feed']:.3f} tokens each): "
            f"{engine['feeds_per_s']:.0f}/s p99 {engine['p99']:.1f} ms",
            flush=True,
        )
    engine = out["engine"]
    args.raw = RAW
    server = lstm_serve(args, "ws")
    try:
        if args.ws_client == "c":
            out["load_before_python"] = wait_quiet(args.max_load, args.patience_s)
            out["closed_python"] = orch._ws_run(args, server.url, 1000, 2, None, "ws-1000-py.json")
        out["load_before"] = wait_quiet(args.max_load, args.patience_s)
        out["closed"] = _ws_loop(args, server.url, None, "ws-1000.json")
        rate = int(0.8 * engine["feeds_per_s"])
        out["load_before_open"] = wait_quiet(args.max_load, args.patience_s)
        out["open"] = _ws_loop(args, server.url, rate, f"ws-rate-{rate}.json")
        out["open"]["rate"] = rate
        closed = out["closed"].get("ops", {}).get("ws_feed", {}).get("throughput_rps")
        if closed:
            own = int(0.8 * closed)
            out["load_before_open_own"] = wait_quiet(args.max_load, args.patience_s)
            out["open_own"] = _ws_loop(args, server.url, own, f"ws-own-{own}.json")
            out["open_own"]["rate"] = own
    finally:
        server.stop()
    for key in ("closed_python", "closed", "open", "open_own"):
        if key in out:
            orch._print_ws(key, out[key])
    return out


def _ws_loop(args: argparse.Namespace, url: str, rate: int | None, name: str) -> dict[str, Any]:
    """A closed loop (``rate`` None) or open loop over 1,000 sessions, with the chosen
    client; the C client leaves its first 3 s out, as a set-up transient."""
    if args.ws_client == "python":
        return orch._ws_run(args, url, 1000, 2, rate, name)
    run = wsload.Load(url, 1000, args.duration_s + 3, rate, warmup_s=3).run(RAW / name)
    run["sessions"] = 1000
    return run


def ws_summary(ws: dict[str, Any]) -> dict[str, Any]:
    closed = ws["closed"]["ops"]["ws_feed"]
    opened = ws["open"]["ops"]["ws_feed"]
    s: dict[str, Any] = {
        "ws_feeds_per_s": closed["throughput_rps"],
        "ws_engine_feeds_per_s": ws["engine"]["feeds_per_s"],
        "ws_engine_one_token_feeds_per_s": ws["engine_one_token"]["feeds_per_s"],
        "ws_open_rate": ws["open"]["rate"],
        "ws_open_p99_ms": opened["latency_ms"]["p99"],
        "ws_open_achieved": opened["throughput_rps"],
    }
    s["ws_over_engine"] = s["ws_feeds_per_s"] / s["ws_engine_feeds_per_s"]
    s["ws_client"] = ws.get("client", "python")
    s["ws_client_cores"] = sum(ws["closed"]["client"]["cpu_util_per_process"])
    python = ws.get("closed_python")
    if python and "error" not in python:
        s["ws_python_client_feeds_per_s"] = python["ops"]["ws_feed"]["throughput_rps"]
        s["ws_python_client_cores"] = sum(python["client"]["cpu_util_per_process"])
        s["ws_python_client_over_engine"] = (
            s["ws_python_client_feeds_per_s"] / s["ws_engine_feeds_per_s"]
        )
    own = ws.get("open_own")
    if own and "error" not in own:
        s["ws_open_own_rate"] = own["rate"]
        s["ws_open_own_p99_ms"] = own["ops"]["ws_feed"]["latency_ms"]["p99"]
        s["ws_open_own_achieved"] = own["ops"]["ws_feed"]["throughput_rps"]
    s["met_ws"] = {
        "ws >= 80% engine": s["ws_over_engine"] >= 0.8,
        "ws p99 <= 100 ms at 80%": (s["ws_open_p99_ms"] or 1e9) <= 100,
    }
    return s
