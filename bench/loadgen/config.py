"""The settings of one load run, shared by the CLI, the driver and worker processes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = ("predict", "score", "feed", "generate", "ws", "mix")
MIX_OPS = ("predict", "score", "feed", "generate")
DEFAULT_MIX = {"predict": 4.0, "score": 2.0, "feed": 3.0, "generate": 1.0}
DEFAULT_CLOSED_CONCURRENCY = 8
DEFAULT_OPEN_CONNECTIONS = 256
LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True)
class RunConfig:
    """One run: what to send, how (closed or open loop) and for how long.

    ``concurrency`` is the number of users in closed loop; in open loop (``rate`` set)
    it is the size of the pool that arrivals share: HTTP connections, or sessions for
    ``feed``/``ws``/``mix``. Either way it is also the number of sessions created.
    """

    scenario: str = "predict"
    url: str = "http://127.0.0.1:8000"
    concurrency: int = DEFAULT_CLOSED_CONCURRENCY
    rate: float | None = None
    arrival: str = "uniform"
    duration_s: float | None = None
    requests: int | None = None
    warmup_s: float = 0.0
    grace_s: float = 10.0
    timeout_s: float = 30.0
    think_s: float = 0.0
    k: int = 5
    max_tokens: int = 20
    temperature: float = 1.0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    api_key: str | None = None
    seed: int = 0
    max_inflight: int = 10_000
    preconnect: bool = False  # open the HTTP pool before the timed phase
    processes: int = 1
    loop: str = "auto"  # the client's event loop: "uvloop", "asyncio", or uvloop if installed
    phase_s: float = 0.0  # open loop: offset of this worker's first arrival

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; one of {SCENARIOS}")
        if self.concurrency < 1 or self.processes < 1 or self.max_inflight < 1:
            raise ValueError("concurrency, processes and max_inflight must be >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}")
        if self.arrival not in ("uniform", "poisson"):
            raise ValueError("arrival must be 'uniform' or 'poisson'")
        if self.duration_s is None and self.requests is None:
            raise ValueError("bound the run with duration_s and/or requests")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        if self.requests is not None and self.requests < 0:
            raise ValueError("requests must be >= 0")
        if self.processes > self.concurrency:
            raise ValueError("processes must not exceed concurrency (each needs a user)")
        unknown = set(self.mix) - set(MIX_OPS)
        if unknown or not any(w > 0 for w in self.mix.values()):
            raise ValueError(f"mix weights must name {MIX_OPS} with a positive weight")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def ws_url(self) -> str:
        """``/v1/stream`` on the same host as ``url`` (http -> ws, https -> wss)."""
        base = self.url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://") :] + "/v1/stream"
        if base.startswith("http://"):
            return "ws://" + base[len("http://") :] + "/v1/stream"
        raise ValueError(f"url must start with http:// or https://, got {self.url!r}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def share(self, index: int, parts: int) -> RunConfig:
        """This worker's slice when the load is spread over ``parts`` processes.

        Users, rate and the request budget are divided; the seed differs so that workers
        do not send identical texts in lockstep.
        """

        def split(total: int) -> int:
            return total // parts + (1 if index < total % parts else 0)

        return dataclasses.replace(
            self,
            concurrency=split(self.concurrency),
            rate=None if self.rate is None else self.rate / parts,
            requests=None if self.requests is None else split(self.requests),
            max_inflight=max(1, self.max_inflight // parts),
            seed=self.seed * 1000 + index,
            processes=1,
            # Worker i sends at i/R, i/R + K/R, ...: together a uniform schedule at rate R.
            phase_s=0.0 if self.rate is None else index / self.rate,
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["api_key"] = "***" if self.api_key else None
        return out


def parse_mix(spec: str) -> dict[str, float]:
    """``"predict=4,score=1"`` -> ``{"predict": 4.0, "score": 1.0}``."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, weight = part.partition("=")
        if not sep or name not in MIX_OPS:
            raise ValueError(f"bad mix entry {part!r}; expected NAME=WEIGHT, NAME in {MIX_OPS}")
        out[name] = float(weight)
    return out
