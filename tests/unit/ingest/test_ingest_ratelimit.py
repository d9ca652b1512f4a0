"""The token bucket, on a fake clock: no real sleeping."""

from __future__ import annotations

import asyncio

import pytest

from marquee_ingest.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_rate_spaces_acquisitions() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)

    for _ in range(20):
        await bucket.acquire()

    assert clock.now - 100.0 == pytest.approx(1.9)  # the first at once, then every 0.1s


async def test_burst_allows_that_many_at_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=5, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    assert clock.now - 100.0 == pytest.approx(0.5)


async def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=2, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    clock.now += 3600  # an hour idle still only buys a burst of 2

    for _ in range(3):
        await bucket.acquire()

    assert clock.now - 100.0 - 3600 == pytest.approx(1.0)


async def test_hold_pauses_everyone() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, clock=clock, sleep=clock.sleep)
    await bucket.acquire()

    bucket.hold(2.0)
    await bucket.acquire()

    assert clock.now - 100.0 >= 2.0


async def test_concurrent_waiters_share_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)

    await asyncio.gather(*(bucket.acquire() for _ in range(11)))

    assert clock.now - 100.0 == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_nonsense_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
