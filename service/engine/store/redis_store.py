"""Sessions in Redis (``redis.asyncio``): one key per session, value = ``SessionRecord``
bytes, key TTL = session TTL, so any replica can resume a session and Redis forgets
idle ones by itself.

The version of the stored state is kept beside it (``v`` field of a hash, with the
blob in ``d``) so that one Lua call can compare-and-set it atomically.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from service.engine.store.base import SessionRecord, StoreConflict, StoreUnavailable

KEY_PREFIX = "lstm-serve:session:"
ANSWER_GRACE_S = 0.2  # past the fence, how long an answer may still be on its way
# KEYS[1] = key; ARGV = expected version, new version, blob, ttl ms, write token, deadline
# (unix ms, 0 = none). Returns 1 when stored, 0 when Redis runs it past its deadline (not
# stored), else -1 - the version found (0 for none), so -1 means "none".
# The token makes a retried call idempotent: if an earlier try of this very save landed
# (its answer was lost), the retry finds its own token and reports success.
# The deadline fences a save that reaches Redis late (a frozen or overloaded Redis runs
# the commands waiting in its socket when it resumes): by then the feed was answered with
# an error, so the save must not land — an error answer means "not applied".
_SAVE = """
local deadline = tonumber(ARGV[6])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > deadline then
    return 0
  end
end
local found = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if found ~= tonumber(ARGV[1]) then
  if found == tonumber(ARGV[2]) and redis.call('HGET', KEYS[1], 't') == ARGV[5] then
    return 1
  end
  return -1 - found
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 't', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def key_of(session_id: str) -> str:
    return KEY_PREFIX + session_id


class RedisStore:
    persistent = True

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        # A blocking pool: a burst of feeds waits for a connection instead of failing.
        # One quick retry (a reconnect after a Redis restart), then a clear error: a feed
        # is not held up for long by a store that is down (and never past its deadline).
        retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 1)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=retry,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._save = self._redis.register_script(_SAVE)

    async def load(self, session_id: str) -> SessionRecord | None:
        try:
            blob = await self._redis.hget(key_of(session_id), "d")
        except RedisError as error:
            raise StoreUnavailable(f"session store unavailable: {error}") from error
        if blob is None:
            return None
        try:
            return SessionRecord.decode(blob if isinstance(blob, bytes) else blob.encode())
        except (ValueError, KeyError, TypeError, struct.error) as error:
            raise StoreUnavailable(f"stored session is unreadable: {error}") from error

    async def save(
        self, record: SessionRecord, expected_version: int, deadline_unix_s: float | None = None
    ) -> None:
        """Store ``record`` if the stored version is ``expected_version``; with a deadline,
        give up (``StoreUnavailable``) just after it and fence the write at it in Redis."""
        ttl_ms = max(1, int(record.ttl_s * 1000))
        deadline_ms = 0 if deadline_unix_s is None else int(deadline_unix_s * 1000)
        args: list[bytes | int] = [
            expected_version,
            record.version,
            record.encode(),
            ttl_ms,
            secrets.token_hex(8).encode(),
            deadline_ms,
        ]
        call = self._save(keys=[key_of(record.id)], args=args)
        try:  # the client retries connection errors itself; the token keeps that safe
            if deadline_unix_s is None:
                answer = await call
            else:
                wait_s = max(0.0, deadline_unix_s - time.time()) + ANSWER_GRACE_S
                answer = await asyncio.wait_for(call, wait_s)
        except TimeoutError as error:
            raise StoreUnavailable("session store did not answer before the deadline") from error
        except RedisError as error:
            raise StoreUnavailable(f"session store unavailable: {error}") from error
        if int(answer) == 0:
            raise StoreUnavailable("session store answered after the deadline; not stored")
        if int(answer) != 1:
            found = -1 - int(answer)
            raise StoreConflict(
                f"session {record.id[:8]}: stored version {found}, expected {expected_version}"
            )

    async def version(self, session_id: str) -> int | None:
        try:
            found = await self._redis.hget(key_of(session_id), "v")
        except RedisError as error:
            raise StoreUnavailable(f"session store unavailable: {error}") from error
        return None if found is None else int(found)

    async def delete(self, session_id: str) -> None:
        try:
            await self._redis.delete(key_of(session_id))
        except RedisError as error:
            raise StoreUnavailable(f"session store unavailable: {error}") from error

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as error:
            raise StoreUnavailable(f"session store unavailable: {error}") from error

    async def close(self) -> None:
        await self._redis.aclose()
