"""All server settings in one place: environment variables ``LSTM_SERVE_*`` and CLI flags.

Nothing else in the code base reads ``os.environ``; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.cpu_sharing import available_cpus

if TYPE_CHECKING:
    from service.engine.core import EngineConfig

SHED_LOOP_LAG_MS = 100.0
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default"


class Settings(BaseSettings):
    """Server configuration; every field is also the CLI flag ``--field-name``."""

    model_config = SettingsConfigDict(env_prefix="LSTM_SERVE_", extra="ignore")

    model_path: Path = Field(DEFAULT_MODEL_PATH, description="checkpoint directory to serve")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="inference device")
    max_batch_size: int = Field(
        256, ge=1, description="most requests or sessions in one model step; 1 = no batching"
    )
    max_batch_tokens: int = Field(8192, ge=1, description="most prompt tokens in one prefill step")
    max_queue: int = Field(1024, ge=1, description="most waiting requests; past it, 429")
    shed_loop_lag_ms: float = Field(
        SHED_LOOP_LAG_MS,
        ge=0,
        description="answer new work requests 429 at once while the event loop runs this "
        "late (requests wait unread in socket buffers); 0 = never",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of one request")
    session_ttl_s: float = Field(3600.0, gt=0, description="idle lifetime of a session")
    max_sessions: int = Field(100_000, ge=1, description="most live sessions")
    session_sweep_interval_s: float = Field(5.0, gt=0, description="how often TTLs are checked")
    max_text_chars: int = Field(100_000, ge=1, description="longest text in one request")
    max_body_bytes: int = Field(1_000_000, ge=1, description="largest HTTP request body")
    max_ws_message_bytes: int = Field(1_000_000, ge=1, description="largest WebSocket message")
    max_k: int = Field(100, ge=1, description="most predictions one request may ask for")
    max_tokens: int = Field(1000, ge=1, description="most words one generation may produce")
    api_keys: str = Field("", description="comma-separated bearer keys; empty = no auth")
    drain_timeout_s: float = Field(20.0, ge=0, description="grace for in-flight work on SIGTERM")
    ws_ping_interval_s: float = Field(20.0, gt=0, description="server ping period on streams")
    ws_protocol: Literal["auto", "websockets", "websockets-sansio", "wsproto"] = Field(
        "auto", description="uvicorn's WebSocket implementation"
    )
    log_json: bool = Field(False, description="log JSON lines (for containers)")
    log_level: str = Field("info", description="logging level")
    session_store: str = Field(
        "memory",
        description="where session states are kept: 'memory' (this process) or "
        "'redis://host:port/db' (any replica can resume a session)",
    )
    session_durability: Literal["sync", "write-behind"] = Field(
        "sync",
        description="'sync': a feed is answered after its state is stored; "
        "'write-behind': stored every write_behind_interval_s (a crash loses at most that)",
    )
    write_behind_interval_s: float = Field(
        0.05, gt=0, description="how often write-behind mode stores changed sessions"
    )
    max_resident_sessions: int = Field(
        0,
        ge=0,
        description="most sessions kept in the state pool; idle ones past it move "
        "to the session store and come back on use (0 = no limit)",
    )
    session_history: int = Field(
        32,
        ge=0,
        le=4096,
        description="tokens a session can rewind (each kept state costs one state slot: "
        "layers x (hidden + cell) x 4 bytes); 0 = no rewind",
    )
    prefix_cache_bytes: int = Field(
        -1,
        ge=-1,
        description="state bytes kept for prefixes of stateless predicts (autocomplete "
        "clients re-sending a growing text); -1 = sized for the machine (1/64 of memory, "
        "at most 256 MiB); 0 = off",
    )
    session_cache: Literal["on", "off"] = Field(
        "off",
        description="on: every new session keeps a continuous cache of its recent words "
        '(Grave et al. 2016; POST /v1/sessions {"cache": true} asks for one per session)',
    )
    max_cache_bytes: int = Field(
        -1,
        ge=-1,
        description="bytes all sessions' continuous caches may hold together (429 past "
        "it); -1 = sized for the machine (1/8 of memory, at most 4 GiB); 0 = no cached "
        "sessions",
    )
    cuda_graphs: bool = Field(
        False,
        description="replay one-token steps from CUDA graphs captured at fixed batch sizes "
        "(a GPU's launch overhead; on a CPU the same padded path runs without graphs)",
    )
    cpu_kernels: Literal["auto", "onednn", "default"] = Field(
        "auto",
        description="the CPU step's matmuls: oneDNN with weights packed once, or torch's "
        "default (MKL); auto times both on the decoder at start and keeps the faster "
        "(oneDNN runs AVX-512 on AMD CPUs, where MKL runs AVX2: 2.2-2.6x, BENCHMARKS §0.8)",
    )
    state_key: str = Field(
        "",
        repr=False,
        description="HMAC key that signs exported session states; unset = a random key at "
        "each start (tokens then import only into this run of this server)",
    )
    threads: int = Field(
        0,
        ge=0,
        description="the engine's torch CPU threads (0 = the CPUs the API processes leave, "
        "at least one)",
    )
    inference_nice: int = Field(
        0,
        ge=-20,
        le=19,
        description="nice value of the engine's inference thread alone (e.g. -10: it runs "
        "first when the API processes contend for the CPUs; below 0 needs CAP_SYS_NICE, "
        "and a refusal is logged and ignored)",
    )
    api_workers: int = Field(
        0,
        ge=0,
        description="API processes (FastAPI + uvicorn) in front of the one engine process "
        "(0 = fits the machine: one per 4 CPUs, at least two where there are two CPUs)",
    )
    gil_switch_interval_ms: float = Field(
        0.1,
        gt=0,
        le=100,
        description="how long a thread may hold the GIL while another waits (CPython: 5 ms); "
        "short lets the inference thread resume after each torch op",
    )

    @field_validator("session_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use 'memory' or a Redis URL (redis://host:port/db)")
        return value

    @field_validator("api_keys")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def api_processes(self) -> int:
        """The API processes to start. HTTP and WebSocket parsing is the bottleneck on a CPU
        machine, so two where there are two CPUs: on 2 vCPUs, 2 API processes served 1.4-2.3x
        the predicts/s of one (BENCHMARKS.md section 0)."""
        cpus = available_cpus()
        return self.api_workers or (max(2, cpus // 4) if cpus >= 2 else 1)

    def engine_threads(self) -> int:
        """Torch threads for the engine: the CPUs the API processes leave, at least one."""
        return self.threads or max(1, available_cpus() - self.api_processes())

    def ws_frame_limit_bytes(self) -> int:
        """uvicorn's own WebSocket message limit: above ours, so that a message over ours
        gets the contract's ``payload_too_large`` answer rather than a 1009 close."""
        return max(self.max_ws_message_bytes * 4, 4 << 20)

    def engine_config(self) -> EngineConfig:
        from service.engine.core import EngineConfig

        return EngineConfig(
            model_path=self.model_path,
            device=self.device,
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            max_queue=self.max_queue,
            request_timeout_s=self.request_timeout_s,
            session_ttl_s=self.session_ttl_s,
            max_sessions=self.max_sessions,
            session_sweep_interval_s=self.session_sweep_interval_s,
            threads=self.engine_threads(),
            inference_nice=self.inference_nice,
            session_store=self.session_store,
            session_durability=self.session_durability,
            write_behind_interval_s=self.write_behind_interval_s,
            max_resident_sessions=self.max_resident_sessions,
            session_history=self.session_history,
            state_key=self.state_key,
            prefix_cache_bytes=self.prefix_cache_budget_bytes(),
            session_cache=self.session_cache == "on",
            max_cache_bytes=self.cache_budget_bytes(),
            cuda_graphs=self.cuda_graphs,
            cpu_kernels=self.cpu_kernels,
        )

    def cache_budget_bytes(self) -> int:
        """``max_cache_bytes``, with -1 resolved to 1/8 of memory, at most 4 GiB."""
        if self.max_cache_bytes >= 0:
            return self.max_cache_bytes
        return min(4 << 30, _memory_bytes() // 8)

    def prefix_cache_budget_bytes(self) -> int:
        """``prefix_cache_bytes``, with -1 resolved to 1/64 of memory, at most 256 MiB."""
        if self.prefix_cache_bytes >= 0:
            return self.prefix_cache_bytes
        return min(256 << 20, _memory_bytes() // 64)

    @cached_property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())


def _memory_bytes() -> int:
    """Physical memory of the machine (4 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4 << 30
