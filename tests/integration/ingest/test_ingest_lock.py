"""The sync lock on a real Redis: one holder, an expiry, renewal, and release by the holder only."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from marquee_ingest.lock import LockLostError, RedisLock, lock_holder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

KEY = "test:lock"


def lock(redis: Redis, owner: str, ttl: float = 30.0) -> RedisLock:
    return RedisLock(redis, KEY, ttl_seconds=ttl, owner=owner)


async def test_one_holder_at_a_time(redis: Redis) -> None:
    a, b = lock(redis, "a"), lock(redis, "b")

    assert await a.acquire()
    assert not await b.acquire()
    assert await lock_holder(redis, KEY) == "a"
    assert 0 < await redis.pttl(KEY) <= 30_000  # an expiry, so a crash cannot block forever

    assert await a.release()
    assert await lock_holder(redis, KEY) is None
    assert await b.acquire()


async def test_only_the_holder_can_release_or_extend(redis: Redis) -> None:
    a, b = lock(redis, "a"), lock(redis, "b")
    assert await a.acquire()
    # a's lock expired (simulated: the key is gone) and b took it meanwhile.
    await redis.delete(KEY)
    assert await b.acquire()

    assert not await a.extend()
    assert not a.held
    with pytest.raises(LockLostError, match="another instance took it"):
        await a.ensure()
    assert not await a.release()  # the token compare protects b's lock
    assert await lock_holder(redis, KEY) == "b"
    await b.ensure()  # still b's


async def test_renewal_keeps_the_lock_past_its_ttl(redis: Redis) -> None:
    a, b = lock(redis, "a", ttl=0.6), lock(redis, "b", ttl=0.6)
    assert await a.acquire()

    loop = asyncio.get_running_loop()
    async with a.renewed():
        # 2.5 ttls, renewed every 0.2 s meanwhile: held, and refused to b, all along.
        until = loop.time() + 1.5
        while loop.time() < until:
            assert a.held
            assert not await b.acquire()
            await asyncio.sleep(0.1)
    # Released on the way out.
    assert await lock_holder(redis, KEY) is None


async def test_an_unrenewed_lock_expires(redis: Redis) -> None:
    a, b = lock(redis, "a", ttl=0.2), lock(redis, "b")
    assert await a.acquire()

    # Once Redis has expired the key, b gets it; a knows its ttl ran out without a renewal.
    await wait_until(b.acquire, timeout=10, what="b takes the expired lock", interval=0.02)
    assert not a.held
