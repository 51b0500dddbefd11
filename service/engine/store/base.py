"""The session store interface and the one byte format a stored session has.

A record is a small JSON header plus the raw float32 bytes of ``h`` and ``c`` (each
``[layers, hidden]``, C order) and, for a session with a continuous cache, the cache's
bytes (``service.engine.session_cache``; their length is in the header): no pickle, so
a store cannot make a server run code, and any replica (any language) can read it back.

Every save is a compare-and-set on ``version``: a replica that writes over a newer
state (the session moved to another replica meanwhile) gets ``StoreConflict`` instead of
silently overwriting it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Protocol

MAGIC = b"LSS1"
_HEADER = struct.Struct("<4sI")  # magic, header length


_BYTES = ("h", "c", "cache", "history_h", "history_c")  # raw bytes after the JSON header


class StoreUnavailable(Exception):
    """The store cannot be reached (or answered an error); never means 'not found'."""


class StoreConflict(Exception):
    """A save found another version (or none) where it expected ``expected_version``."""


@dataclass
class SessionRecord:
    """One session as stored: enough for any replica to resume it exactly.

    ``h`` and ``c`` are float32 bytes of shape ``shape`` = ``[layers, hidden]``.
    ``version`` counts state changes; it only grows.
    """

    id: str
    owner: str | None
    position: int
    created_at: float  # unix seconds
    last_used_at: float  # unix seconds
    ttl_s: float
    model_sha256: str
    version: int
    h: bytes
    c: bytes
    dtype: str = "float32"
    shape: tuple[int, int] = (0, 0)
    cache: bytes = b""  # the continuous cache (empty: the session has none)
    # The rewind history (``service.engine.history.StoredHistory``): -1 = none kept.
    history_base: int = -1
    history_tokens: list[int] = field(default_factory=list)
    history_h: bytes = b""
    history_c: bytes = b""

    def encode(self) -> bytes:
        header = {k: v for k, v in asdict(self).items() if k not in _BYTES}
        header["shape"] = list(self.shape)
        header["tail_bytes"] = [len(self.cache), len(self.history_h), len(self.history_c)]
        raw = json.dumps(header, separators=(",", ":")).encode()
        tail = self.cache + self.history_h + self.history_c
        return _HEADER.pack(MAGIC, len(raw)) + raw + self.h + self.c + tail

    @classmethod
    def decode(cls, blob: bytes) -> SessionRecord:
        magic, length = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise ValueError("not a stored lstm-serve session")
        start = _HEADER.size
        header = json.loads(blob[start : start + length])
        cache_n, history_h_n, history_c_n = header.pop("tail_bytes", (0, 0, 0))
        tail_start = len(blob) - cache_n - history_h_n - history_c_n
        body, tail = blob[start + length : tail_start], blob[tail_start:]
        layers, hidden = header.pop("shape")
        h_bytes = layers * hidden * 4
        # c is as large as h for the LSTM family, empty for rnn/gru (state h only).
        if header.get("dtype") != "float32" or len(body) not in (h_bytes, 2 * h_bytes):
            raise ValueError("stored session has an unexpected state layout")
        return cls(
            **header,
            shape=(layers, hidden),
            h=body[:h_bytes],
            c=body[h_bytes:],
            cache=tail[:cache_n],
            history_h=tail[cache_n : cache_n + history_h_n],
            history_c=tail[cache_n + history_h_n :],
        )


class SessionStore(Protocol):
    """Async key-value store of ``SessionRecord``s, keyed by session id."""

    persistent: bool  # survives this process (worth writing after every feed)

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record, or None when there is none (never expired ones)."""
        ...

    async def save(
        self, record: SessionRecord, expected_version: int, deadline_unix_s: float | None = None
    ) -> None:
        """Store ``record`` if the stored version is ``expected_version`` (0: none stored);
        else raise ``StoreConflict``. The record expires after ``record.ttl_s``."""
        ...

    async def version(self, session_id: str) -> int | None:
        """The stored version (a cheap check that a local copy is still the newest)."""
        ...

    async def delete(self, session_id: str) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be used."""
        ...

    async def close(self) -> None: ...
