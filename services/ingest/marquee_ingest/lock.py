"""A Redis lock with an expiry, renewed while held, released only by its holder.

The classic single-instance pattern (https://redis.io/docs/latest/develop/use/patterns/
distributed-locks/#correct-implementation-with-a-single-instance), as redis-py's ``Lock`` does
it: ``SET key token NX PX ttl`` to take it; renewal and release compare the token in a Lua
script, so an instance whose lock expired (a long GC pause, a network partition) can neither
extend nor delete the lock another instance has taken since. The expiry is what frees the lock
after a crash. This class adds what the sync needs on top: the owner's name in the token (for
``lock_holder``), background renewal, and ``held``, which turns false when renewals stop
succeeding for a whole ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import TYPE_CHECKING

import structlog
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, RedisError

from marquee_shared.streams import as_text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis.asyncio import Redis

log = structlog.get_logger(__name__)


class LockLostError(RuntimeError):
    """The lock expired or was taken over while we worked: stop before writing anything more."""


class RedisLock:
    """One named lock. ``owner`` is shown to others (who is syncing); the token is secret."""

    def __init__(self, redis: Redis, key: str, *, ttl_seconds: float, owner: str) -> None:
        self.key = key
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        # thread_local=False: the token belongs to this object, whichever task renews it.
        self._lock = Lock(
            redis, key, timeout=self._ttl_ms / 1000, blocking=False, thread_local=False
        )
        self.owner = owner
        self._taken = False
        self._lost = False
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        """Whether we still hold it: taken, never found taken over, and renewed within its ttl.

        The last condition matters when Redis is unreachable: renewals fail, the key expires
        over there, and we must assume another instance may have it now.
        """
        return self._taken and not self._lost and time.monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        # The owner goes into the value so `holder()` can say who has it; the random part makes
        # the value unguessable and unique per acquisition (the compare in release/extend).
        token = f"{self.owner}|{secrets.token_hex(16)}"
        # Measured before the request: the key's expiry runs from when Redis set it, which is
        # no earlier than this.
        started = time.monotonic()
        if await self._lock.acquire(token=token):
            self._taken = True
            self._lost = False
            self._valid_until = started + self._ttl_ms / 1000
            return True
        return False

    async def extend(self) -> bool:
        """Push the expiry out by the ttl again; False (and ``held`` turns false) if not ours."""
        if not self._taken:
            return False
        started = time.monotonic()
        try:
            await self._lock.reacquire()  # the expiry back to the full ttl, if still ours
        except LockNotOwnedError:
            self._lost = True
            return False
        self._valid_until = started + self._ttl_ms / 1000
        return True

    async def release(self) -> bool:
        """Delete the lock if it is still ours; True if it was."""
        taken, self._taken = self._taken, False
        if not taken:
            return False
        try:
            await self._lock.release()
        except LockNotOwnedError:
            return False
        return True

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
    return as_text(value).split("|", 1)[0]
