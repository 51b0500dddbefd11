"""``lstm-serve-bench``: load generator for lstm-serve (closed or open loop, with sweeps).

Examples (server from ``make run`` on http://127.0.0.1:8000)::

    lstm-serve-bench predict --concurrency 16 --duration-s 30
    lstm-serve-bench feed --rate 200 --duration-s 30 --warmup-s 5 --json feed.json
    lstm-serve-bench ws --concurrency 400 --think-s 0.5 --processes 2 --duration-s 30
    lstm-serve-bench predict --sweep-concurrency 1,2,4,8,16,32 --duration-s 10 --plot p.png

Every flag is explained in ``docs/LOADTEST.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.loadgen.config import (
    DEFAULT_CLOSED_CONCURRENCY,
    DEFAULT_OPEN_CONNECTIONS,
    LOOPS,
    SCENARIOS,
    RunConfig,
    parse_mix,
)
from bench.loadgen.report import op_table, sweep_table, write_json
from bench.loadgen.runner import run

DEFAULT_DURATION_S = 10.0


def _floats(spec: str) -> list[float]:
    return [float(x) for x in spec.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The CLI, one argument group per step: target, load shape, sweeps, bounds, contents."""
    p = argparse.ArgumentParser(
        prog="lstm-serve-bench",
        description="Load generator for lstm-serve: closed or open loop, with sweeps.",
        epilog="Every flag is explained in docs/LOADTEST.md.",
    )
    p.add_argument("scenario", choices=SCENARIOS, help="what each request does")
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="server base URL (default %(default)s)"
    )
    _add_load_shape(p.add_argument_group("load shape"))
    _add_sweeps(p.add_argument_group("sweeps (one run per level)"))
    _add_bounds(p.add_argument_group("bounds (per run / per sweep level)"))
    _add_contents(p.add_argument_group("request contents"))
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    out.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="PNG of p50/p99 vs achieved throughput (one point per level)",
    )
    return p


def _add_load_shape(load: argparse._ArgumentGroup) -> None:
    """Closed loop (users) or open loop (a fixed arrival schedule), and its client side."""
    load.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"closed loop: users (default {DEFAULT_CLOSED_CONCURRENCY}); open "
        f"loop: connection/session pool (default {DEFAULT_OPEN_CONNECTIONS})",
    )
    load.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: arrivals per second on a fixed schedule",
    )
    load.add_argument(
        "--arrival",
        choices=("uniform", "poisson"),
        default="uniform",
        help="open-loop gaps: exactly 1/rate (default), or seeded exponential",
    )
    load.add_argument(
        "--think-s",
        type=float,
        default=0.0,
        help="closed loop: mean pause of a user between requests, ±50%% (default 0)",
    )
    load.add_argument(
        "--processes",
        type=int,
        default=1,
        help="spread users/rate over this many client processes (default 1)",
    )
    load.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="the client's event loop: uvloop (a third less client CPU per WebSocket "
        "feed), plain asyncio, or auto: uvloop if installed (default)",
    )
    load.add_argument(
        "--preconnect",
        action="store_true",
        help="open all --concurrency HTTP connections (GET /healthz) before the timed "
        "phase, so that no measured request waits for a connection to be set up",
    )
    load.add_argument(
        "--max-inflight",
        type=int,
        default=10_000,
        help="open loop: most outstanding requests, more count as "
        "client:backlog errors (default %(default)s)",
    )


def _add_sweeps(load: argparse._ArgumentGroup) -> None:
    load.add_argument(
        "--sweep-concurrency",
        type=_floats,
        default=None,
        metavar="LIST",
        help="closed-loop sweep, e.g. 1,2,4,8 (one run per level)",
    )
    load.add_argument(
        "--sweep-rate",
        type=_floats,
        default=None,
        metavar="LIST",
        help="open-loop sweep, e.g. 50,100,200 (one run per level)",
    )


def _add_bounds(bounds: argparse._ArgumentGroup) -> None:
    """When a run stops sending, what it leaves out, and how long it waits."""
    bounds.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help=f"stop sending after this long (default {DEFAULT_DURATION_S:g} "
        "unless --requests is given)",
    )
    bounds.add_argument("--requests", type=int, default=None, help="stop after sending this many")
    bounds.add_argument(
        "--warmup-s",
        type=float,
        default=0.0,
        help="leave requests started in the first seconds out of the stats (default 0)",
    )
    bounds.add_argument(
        "--grace-s",
        type=float,
        default=10.0,
        help="after the stop, wait this long for answers, then cancel "
        "(client:unfinished; default %(default)s)",
    )
    bounds.add_argument(
        "--timeout-s", type=float, default=30.0, help="per-request timeout (default %(default)s)"
    )


def _add_contents(req: argparse._ArgumentGroup) -> None:
    """What each request asks for (k, generation, mix) and how it authenticates."""
    req.add_argument(
        "--k", type=int, default=5, help="predictions asked per predict/feed (default %(default)s)"
    )
    req.add_argument(
        "--max-tokens",
        type=int,
        default=20,
        help="generate: words per answer (default %(default)s)",
    )
    req.add_argument(
        "--temperature", type=float, default=1.0, help="generate: temperature (default %(default)s)"
    )
    req.add_argument(
        "--mix",
        type=parse_mix,
        default=None,
        metavar="SPEC",
        help="mix weights (default predict=4,score=2,feed=3,generate=1)",
    )
    req.add_argument(
        "--seed", type=int, default=0, help="texts and schedules are seeded (default 0)"
    )
    req.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY'")


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    """One config per run: a single run, or one per level of the sweep."""
    if args.sweep_concurrency and args.sweep_rate:
        raise ValueError("sweep either concurrency or rate, not both")
    if args.sweep_concurrency and args.rate is not None:
        raise ValueError("--sweep-concurrency is a closed-loop sweep; drop --rate")
    open_loop = args.rate is not None or bool(args.sweep_rate)
    default_conc = DEFAULT_OPEN_CONNECTIONS if open_loop else DEFAULT_CLOSED_CONCURRENCY
    duration = args.duration_s
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION_S
    extra: dict[str, Any] = {"mix": args.mix} if args.mix else {}
    base = RunConfig(
        scenario=args.scenario,
        url=args.url,
        concurrency=args.concurrency or default_conc,
        rate=args.rate,
        arrival=args.arrival,
        duration_s=duration,
        requests=args.requests,
        warmup_s=args.warmup_s,
        grace_s=args.grace_s,
        timeout_s=args.timeout_s,
        think_s=args.think_s,
        k=args.k,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        api_key=args.api_key,
        seed=args.seed,
        max_inflight=args.max_inflight,
        preconnect=args.preconnect,
        processes=args.processes,
        loop=args.loop,
        **extra,
    )
    if args.sweep_concurrency:
        return [dataclasses.replace(base, concurrency=int(c)) for c in args.sweep_concurrency]
    if args.sweep_rate:
        return [dataclasses.replace(base, rate=r) for r in args.sweep_rate]
    return [base]


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print tables, optionally write ``--json`` and ``--plot``; 1 if nothing succeeded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configs = configs_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    results: list[dict[str, Any]] = []
    try:
        for cfg in configs:
            result = run(cfg)
            results.append(result)
            print(op_table(result), end="\n\n", flush=True)
    except KeyboardInterrupt:
        print("interrupted; the levels finished so far are kept", file=sys.stderr)
        if not results:
            return 130
    if len(results) > 1:
        print(sweep_table(results))
    if args.json is not None:
        config = configs[0].to_json()
        config["sweep_concurrency"], config["sweep_rate"] = args.sweep_concurrency, args.sweep_rate
        write_json(args.json, config, results)
    if args.plot is not None:
        from bench.loadgen.plot import plot_sweep

        plot_sweep(results, args.plot, f"{args.scenario} @ {args.url}")
    return 0 if any(r["ops"]["total"]["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
