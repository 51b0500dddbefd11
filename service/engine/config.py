"""``EngineConfig``: everything the engine is configured by (handed in by the shell; the
engine reads no settings module and no environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from models.packed_linear import Kernel
from service.engine.durable import Durability


@dataclass(frozen=True)
class EngineConfig:
    model_path: Path
    device: str = "auto"
    max_batch_size: int = 256
    max_batch_tokens: int = 8192
    max_queue: int = 1024
    request_timeout_s: float = 30.0
    session_ttl_s: float = 3600.0
    max_sessions: int = 100_000
    session_sweep_interval_s: float = 5.0
    initial_pool_slots: int = 1024
    threads: int = 0  # torch CPU threads; 0 = torch's own default
    inference_nice: int = 0  # the inference thread's nice value (below 0: CAP_SYS_NICE)
    session_store: str = "memory"  # or redis://host:port/db
    session_durability: Durability = "sync"
    write_behind_interval_s: float = 0.05
    max_resident_sessions: int = 0  # 0: no tiering (every live session keeps its slot)
    session_history: int = 32  # tokens a session can rewind (each kept state is one slot)
    state_key: str = ""  # HMAC key of exported state tokens; "" = random at each start
    prefix_cache_bytes: int = 0  # states of stateless prefixes kept for reuse; 0 = off
    session_cache: bool = False  # every new session keeps a continuous cache
    max_cache_bytes: int = 1 << 30  # all sessions' continuous caches together
    cuda_graphs: bool = False  # one-token steps replayed from CUDA graphs (service.engine.graphs)
    cpu_kernels: Kernel = "auto"  # CPU matmuls: oneDNN packed weights or torch's default

    def pool_reserve_slots(self, bytes_per_slot: int) -> int:
        """Slots a CPU state pool reserves address space for (``StatePool.reserve``: pages
        exist once used): every resident session with its whole rewind history and a
        feed's save in flight, the prefix cache full, and a full queue of stateless work."""
        resident = self.max_resident_sessions or self.max_sessions
        prefix = self.prefix_cache_bytes // max(1, bytes_per_slot)
        return resident * (self.session_history + 2) + prefix + self.max_queue + self.max_batch_size


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for but no CUDA device is available")
    return torch.device(name)
