"""SyncService's background work while Redis is away: the demo seeding tries again after
delays that double up to the cap (with jitter), and stops trying once a step succeeds."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from marquee_ingest.service import SyncService
from tests.support.waiting import wait_until


class _SyncWhileRedisIsAway:
    """The part of TmdbSync the seeding uses: Redis refuses ``failures`` times, then answers."""

    configured = False  # no TMDB credentials: after seeding there is no schedule to run

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def seed_demo_if_empty(self, seed: Any) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise RedisConnectionError("Connection refused")
        await seed()
        return True


async def test_seeding_backs_off_while_redis_is_away_then_seeds_once() -> None:
    sync = _SyncWhileRedisIsAway(failures=5)
    seeded: list[int] = []
    delays: list[float] = []

    async def seed() -> None:
        seeded.append(1)

    async def sleep(delay: float) -> None:  # a fake clock: records the wait, does not wait
        delays.append(delay)

    service = SyncService(sync, None, retry_first_s=1.0, retry_cap_s=4.0, sleep=sleep)  # type: ignore[arg-type]
    service.start(seed)

    async def seeding_done() -> bool:
        return service.seeded is not None

    await wait_until(seeding_done, timeout=10, what="seeding done", interval=0.005)
    await service.stop()

    assert service.seeded is True
    assert seeded == [1]
    assert sync.calls == 6
    # Equal jitter: each delay is between half its ceiling and the ceiling; ceilings double
    # from the first delay and stop at the cap.
    assert len(delays) == 5
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
