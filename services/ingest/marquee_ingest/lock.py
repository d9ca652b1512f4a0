"""A Redis lock with an expiry, renewed while held, released only by its holder.

The classic single-instance pattern (https://redis.io/docs/latest/develop/use/patterns/
distributed-locks/#correct-implementation-with-a-single-instance): ``SET key token NX PX ttl``
to take it; renewal and release compare the token in a Lua script, so an instance whose lock
expired (a long GC pause, a network partition) can neither extend nor delete the lock another
instance has taken since. The expiry is what frees the lock after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

# Delete / extend the key only while it still holds our token; 1 if done, 0 if not ours.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class LockLostError(RuntimeError):
    """The lock expired or was taken over while we worked: stop before writing anything more."""


class RedisLock:
    """One named lock. ``owner`` is shown to others (who is syncing); the token is secret."""

    def __init__(self, redis: Redis, key: str, *, ttl_seconds: float, owner: str) -> None:
        self._redis = redis
        self.key = key
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self.owner = owner
        self._token: str | None = None
        self._lost = False
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        """Whether we still hold it: taken, never found taken over, and renewed within its ttl.

        The last condition matters when Redis is unreachable: renewals fail, the key expires
        over there, and we must assume another instance may have it now.
        """
        return self._token is not None and not self._lost and time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        # The owner goes into the value so `holder()` can say who has it; the random part makes
        # the value unguessable and unique per acquisition (the compare in release/extend).
        token = f"{self.owner}|{secrets.token_hex(16)}"
        # Measured before the request: the key's expiry runs from when Redis set it, which is
        # no earlier than this.
        started = time.monotonic()
        if await self._redis.set(self.key, token, nx=True, px=self._ttl_ms):
            self._token = token
            self._lost = False
            self._valid_until = started + self._ttl_ms / 1000
            return True
        return False

    async def extend(self) -> bool:
        """Push the expiry out by the ttl again; False (and ``held`` turns false) if not ours."""
        if self._token is None:
            return False
        started = time.monotonic()
        extended = await self._redis.eval(_EXTEND, 1, self.key, self._token, str(self._ttl_ms))
        if extended:
            self._valid_until = started + self._ttl_ms / 1000
        else:
            self._lost = True
        return bool(extended)

    async def release(self) -> bool:
        """Delete the lock if it is still ours; True if it was."""
        token, self._token = self._token, None
        if token is None:
            return False
        released = await self._redis.eval(_RELEASE, 1, self.key, token)
        return bool(released)

    async def ensure(self) -> None:
        """Confirm in Redis that the lock is still ours (and renew it), or raise LockLostError.

        Called before each write: one round trip per step is cheap next to a TMDB fetch, and
        it catches a takeover between two background renewals.
        """
        if not self.held or not await self.extend():
            raise LockLostError(
                f"lost the lock {self.key} (it expired or another instance took it)"
            )

    @contextlib.asynccontextmanager
    async def renewed(self) -> AsyncIterator[None]:
        """While inside, renew the lock every third of its ttl; release it on the way out."""
        task = asyncio.create_task(self._keep_alive(), name=f"renew {self.key}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self.release()
            except (RedisError, OSError) as exc:
                # Redis went away: the expiry frees the lock shortly anyway.
                log.warning("lock_release_failed", key=self.key, error=str(exc))

    async def _keep_alive(self) -> None:
        interval = self._ttl_ms / 3000
        while self.held:
            await asyncio.sleep(interval)
            try:
                if not await self.extend():
                    log.error("lock_lost", key=self.key, owner=self.owner)
                    return
            except (RedisError, OSError) as exc:
                # One failed renewal is not yet a lost lock: two more tries fit in the ttl.
                log.warning("lock_renewal_failed", key=self.key, error=str(exc))


async def lock_holder(redis: Redis, key: str) -> str | None:
    """Who holds the lock (the owner part of its value), or None if it is free."""
    value = await redis.get(key)
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.split("|", 1)[0]
