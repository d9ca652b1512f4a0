"""The explanation cache in Redis, with single flight.

Keys are digests of everything an explanation depends on: the content hashes of the target and
the taste's movies, the taste set, the prompt and template versions and the model. A movie that
changes gets a new content hash, so explanations written for its old version are never looked
up again (they simply expire).

Concurrent identical requests make one generation: within a process they await the same task;
across replicas, the first to take a Redis lock (redis-py's ``Lock``: SET NX with an expiry,
released only by its holder) generates, and the others poll the cache until the answer lands or
the lock goes.

Redis is an optimisation here, not a dependency: when it fails, explanations are generated
uncached (logged), never refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, RedisError

from marquee_shared.api import Explanation

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

PREFIX = "marquee:explanations:v1"
POLL_S = 0.05

Generate = Callable[[], Awaitable[tuple[Explanation, int]]]
"""Produces an explanation and the seconds to cache it for (0: do not cache)."""


def cache_key(parts: object) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


class ExplanationCache:
    def __init__(self, redis: Redis, *, lock_ttl_s: float, wait_s: float) -> None:
        self._redis = redis
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._wait_s = wait_s
        self._inflight: dict[str, asyncio.Task[tuple[Explanation, bool]]] = {}

    async def get(self, key: str) -> Explanation | None:
        try:
            raw = await self._redis.get(f"{PREFIX}:{key}")
        except (RedisError, OSError) as exc:
            log.warning("explanation_cache_unavailable", op="get", error=str(exc))
            return None
        if raw is None:
            return None
        try:
            return Explanation.model_validate_json(raw)
        except ValueError:
            log.warning("explanation_cache_entry_unreadable", key=key)
            return None

    async def put(self, key: str, explanation: Explanation, ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        try:
            await self._redis.set(f"{PREFIX}:{key}", explanation.model_dump_json(), ex=ttl_s)
        except (RedisError, OSError) as exc:
            log.warning("explanation_cache_unavailable", op="put", error=str(exc))

    async def get_or_generate(self, key: str, generate: Generate) -> tuple[Explanation, bool]:
        """The cached explanation (and True), or one generated once for all concurrent callers
        (and False for the callers of the process that generated it)."""
        hit = await self.get(key)
        if hit is not None:
            return hit, True
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._across_replicas(key, generate))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: a caller that disconnects must not cancel the work the others wait for.
        return await asyncio.shield(task)

    async def _across_replicas(self, key: str, generate: Generate) -> tuple[Explanation, bool]:
        lock_key = f"{PREFIX}:lock:{key}"
        lock = Lock(
            self._redis,
            lock_key,
            timeout=self._lock_ttl_ms / 1000,
            blocking=False,
            thread_local=False,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while True:
            try:
                acquired = await lock.acquire()
            except (RedisError, OSError) as exc:
                log.warning("explanation_lock_unavailable", error=str(exc))
                explanation, _ = await generate()
                return explanation, False
            if acquired:
                try:
                    # Another replica may have finished between our miss and our lock.
                    hit = await self.get(key)
                    if hit is not None:
                        return hit, True
                    explanation, ttl = await generate()
                    await self.put(key, explanation, ttl)
                    return explanation, False
                finally:
                    await self._release(lock)
            hit = await self._wait_for_other(key, lock_key, deadline)
            if hit is not None:
                return hit, True
            if loop.time() >= deadline:
                # The holder is stuck: answer rather than make the user wait longer.
                log.warning("explanation_lock_wait_exceeded", wait_s=self._wait_s)
                explanation, _ = await generate()
                return explanation, False
            # The lock went without an answer (the holder failed, or did not cache a
            # fallback): try to take it ourselves.

    async def _wait_for_other(self, key: str, lock: str, deadline: float) -> Explanation | None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            hit = await self.get(key)
            if hit is not None:
                return hit
            try:
                if not await self._redis.exists(lock):
                    return await self.get(key)
            except (RedisError, OSError):
                return None
        return None

    async def _release(self, lock: Lock) -> None:
        try:
            await lock.release()
        except LockNotOwnedError:
            pass  # it expired while we generated; another replica may hold it now
        except (RedisError, OSError) as exc:
            log.warning("explanation_lock_release_failed", error=str(exc))
