"""Live sessions: id -> (state slot, position, owner, timestamps). Event-loop side only.

A session's recurrent state lives in the ``StatePool`` slot it owns; this registry
only keeps the few fields around it, so a live session costs its state plus about a
hundred bytes of Python.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from service.engine.errors import InvalidRequest, Overloaded, SessionBusy, SessionNotFound
from service.engine.history import History
from service.engine.session_cache import CachePool
from service.engine.state_pool import StatePool


@dataclass(eq=False, slots=True)
class Session:
    id: str
    slot: int
    owner: str | None
    created_at: float  # unix seconds
    last_used_at: float  # unix seconds
    position: int = 0
    inflight: int = 0  # queued or running work items that use the slot
    deleted: bool = False
    streaming: bool = False  # a live WebSocket is attached
    # Durability (service.engine.durable): ``version`` counts state changes, ``stored_version``
    # is the one the store holds; ``stale`` means the slot must be reloaded from the store
    # (a save failed, so the slot may hold an unacknowledged state); ``epoch`` grows then.
    version: int = 0
    stored_version: int = 0
    stale: bool = False
    epoch: int = 0
    save_lock: asyncio.Lock | None = None
    history: History = field(default_factory=History)  # rewind states (extra slots)
    cache_slot: int | None = None  # its continuous cache's ring (``session_cache``)

    @property
    def dirty(self) -> bool:
        return self.version != self.stored_version


ID_BYTES = 24


class SessionRegistry:
    """Creates, finds and retires sessions; owns their slots in the pool."""

    def __init__(
        self, pool: StatePool, max_sessions: int, ttl_s: float, caches: CachePool | None = None
    ) -> None:
        self.pool = pool
        self.caches = caches  # None: this model has no tuned continuous cache
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._random = b""  # unused random bytes for session ids

    def _new_id(self) -> str:
        """192 random bits, base64url. Drawn from the OS 4 KB at a time: each draw lets
        the inference thread take the interpreter lock, which a fork burst felt."""
        if len(self._random) < ID_BYTES:
            self._random = secrets.token_bytes(ID_BYTES * 170)
        raw, self._random = self._random[:ID_BYTES], self._random[ID_BYTES:]
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def create(self, owner: str | None, cached: bool = False, slot: int | None = None) -> Session:
        """A new session with a fresh slot (its state is written by its first work item;
        ``slot``: one the caller allocated) and, if ``cached``, a continuous cache
        (``Overloaded`` past either budget)."""
        if len(self._sessions) >= self.max_sessions:
            raise Overloaded(f"session capacity full ({self.max_sessions} live)")
        cache_slot = self._cache_slot(cached)
        now = time.time()
        slot = self.pool.allocate() if slot is None else slot
        session = Session(self._new_id(), slot, owner, now, now)
        session.cache_slot = cache_slot
        self._sessions[session.id] = session
        return session

    def _cache_slot(self, cached: bool) -> int | None:
        if not cached:
            return None
        if self.caches is None:
            raise InvalidRequest(
                "this model has no continuous cache: its card holds no tuned theta, lambda "
                "and window (python -m models.tune_cache)"
            )
        return self.caches.allocate()

    def adopt(
        self,
        session_id: str,
        owner: str | None,
        created_at: float,
        last_used_at: float,
        position: int,
        version: int,
        cached: bool = False,
    ) -> Session:
        """A session resumed from the store (its slot still has to be restored)."""
        if len(self._sessions) >= self.max_sessions:
            raise Overloaded(f"session capacity full ({self.max_sessions} live)")
        cache_slot = self._cache_slot(cached)
        session = Session(
            session_id,
            self.pool.allocate(),
            owner,
            created_at,
            last_used_at,
            position,
            version=version,
            stored_version=version,
            cache_slot=cache_slot,
        )
        self._sessions[session_id] = session
        return session

    def find(self, session_id: str) -> Session | None:
        """The local session with this id, whoever owns it."""
        return self._sessions.get(session_id)

    def get(self, session_id: str, owner: str | None) -> Session:
        """The caller's session; another key's session is reported as not found."""
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            raise SessionNotFound(session_id)
        return session

    def expires_at(self, session: Session) -> float:
        return session.last_used_at + self.ttl_s

    def begin(self, session: Session) -> None:
        """A work item for ``session`` was queued."""
        session.inflight += 1
        session.last_used_at = time.time()

    def end(self, session: Session) -> None:
        session.inflight -= 1
        session.last_used_at = time.time()
        if session.deleted and session.inflight == 0:
            self._release(session)

    def delete(self, session: Session) -> None:
        if session.deleted:
            return
        session.deleted = True
        self._sessions.pop(session.id, None)
        if session.inflight == 0:
            self._release(session)

    def _release(self, session: Session) -> None:
        """Free the session's slot and its history's slots (once no work uses them)."""
        self.pool.release(session.slot)
        session.history.clear(self.pool.release)
        if session.cache_slot is not None and self.caches is not None:
            self.caches.release(session.cache_slot)
            session.cache_slot = None

    def attach(self, session: Session) -> None:
        if session.streaming:
            raise SessionBusy(f"session {session.id!r} already has a live stream")
        session.streaming = True

    def detach(self, session: Session) -> None:
        session.streaming = False
        session.last_used_at = time.time()

    def is_expired(self, session: Session, now: float | None = None) -> bool:
        """Idle past its TTL (a session with a live stream or work never expires). Checked
        at every use, so an expired session is gone from that instant, sweeper or not."""
        now = time.time() if now is None else now
        return (
            not session.streaming
            and session.inflight == 0
            and session.last_used_at + self.ttl_s < now
        )
