"""The catalog backlog is counted from facts, against real redis-server processes.

Redis's own ``lag`` (XINFO GROUPS) is an estimate, and Redis 7.0 gets it wrong: the group's
``entries-read`` is written to the AOF only at a rewrite (each read is logged as an XCLAIM that
moves the last-delivered id but not the counter), so after a restart a group that has read and
acknowledged everything reports every entry read since the last rewrite as still to read, on
a stream trimmed to nothing (redis/redis#12898). Publisher backpressure trusted that figure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import devstack
from marquee_shared.events import CATALOG_STREAM, Movie, MovieFetched
from marquee_shared.streams import (
    count_after,
    group_backlogs,
    publish_events,
    stream_backlog,
    wait_for_backlog_below,
)

pytestmark = pytest.mark.integration

GROUP = "embedders"


def events(n: int, start: int = 1) -> list[MovieFetched]:
    return [
        MovieFetched(
            source="test",
            movie=Movie(tmdb_id=start + i, title=f"Film {start + i}", overview="A story."),
        )
        for i in range(n)
    ]


class PersistentRedis:
    """A redis-server with AOF on, as `make run` starts it, that the test can restart."""

    def __init__(self, base: Path) -> None:
        self.port = devstack.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = devstack.redis_proc(self.port, base / "data", base, persistent=True)

    def start(self) -> None:
        self.proc.start()
        self.proc.wait_until(self._loaded, "answering PING with its data loaded", 30)

    def _loaded(self) -> bool:
        import redis

        try:
            return redis.Redis.from_url(self.url).info("persistence")["loading"] == 0
        except (redis.RedisError, OSError):
            return False

    def restart(self) -> None:
        self.proc.stop()  # SIGTERM: Redis flushes the AOF on a clean shutdown
        self.start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path)
    try:
        server.start()
    except devstack.StackError as exc:
        server.proc.stop()
        pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
    yield server
    server.proc.stop()


@pytest.fixture
async def client(server: PersistentRedis) -> AsyncIterator[Redis]:
    redis = Redis.from_url(server.url)
    yield redis
    await redis.aclose()


async def read_and_ack_everything(redis: Redis) -> None:
    """What the embedders do: XREADGROUP ">", then XACK once applied."""
    while reply := await redis.xreadgroup(GROUP, "worker-1", {CATALOG_STREAM: ">"}, count=100):
        ((_, entries),) = reply
        await redis.xack(CATALOG_STREAM, GROUP, *[entry_id for entry_id, _ in entries])


async def rewrite_aof(redis: Redis) -> None:
    """BGREWRITEAOF, as Redis does by itself once the AOF has doubled, and wait for it."""
    await redis.bgrewriteaof()
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        info = await redis.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the AOF rewrite did not finish within 30s")


async def trim_acknowledged(redis: Redis) -> None:
    """What the recovery loop does once everything is acknowledged: XTRIM MINID past the end."""
    last = (await redis.xinfo_groups(CATALOG_STREAM))[0]["last-delivered-id"].decode()
    ms, seq = last.split("-")
    await redis.xtrim(CATALOG_STREAM, minid=f"{ms}-{int(seq) + 1}")


async def test_a_caught_up_group_has_no_backlog_when_redis_lag_drifts_after_a_restart(
    server: PersistentRedis, client: Redis
):
    await client.xgroup_create(CATALOG_STREAM, GROUP, id="0", mkstream=True)
    await publish_events(client, events(10))
    await read_and_ack_everything(client)
    await rewrite_aof(client)
    await publish_events(client, events(30, start=100))
    await read_and_ack_everything(client)
    await trim_acknowledged(client)
    assert await stream_backlog(client) == 0  # before the restart Redis agrees

    server.restart()
    await client.aclose()
    client = Redis.from_url(server.url)
    try:
        stream = await client.xinfo_stream(CATALOG_STREAM)
        (group,) = await client.xinfo_groups(CATALOG_STREAM)
        # The facts: nothing on the stream, nothing pending, the group has read the last entry.
        assert stream["length"] == 0
        assert group["pending"] == 0
        assert group["last-delivered-id"] == stream["last-generated-id"]
        # Redis's estimate: the 30 entries read since the rewrite, as if never read. If this
        # fails, this Redis no longer drifts and the test no longer exercises the fault.
        assert group["lag"] == 30, f"Redis lag did not drift here: {group}"

        assert await stream_backlog(client) == 0
        (backlog,) = await group_backlogs(client)
        assert (backlog.pending, backlog.undelivered, backlog.lag_hint) == (0, 0, 30)
        # A publisher held to a bound below the phantom passes at once.
        assert await wait_for_backlog_below(client, 10, max_wait_s=0) == 0.0
        assert await asyncio.to_thread(devstack.backlog, server.url) == 0

        # A real backlog is still counted exactly: 7 published, 3 of them delivered.
        await publish_events(client, events(7, start=500))
        await client.xreadgroup(GROUP, "worker-2", {CATALOG_STREAM: ">"}, count=3)
        (backlog,) = await group_backlogs(client)
        assert (backlog.pending, backlog.undelivered, backlog.backlog) == (3, 4, 7)
        assert backlog.lag_hint == 34  # still 30 off
        assert await stream_backlog(client) == 7
        assert await asyncio.to_thread(devstack.backlog, server.url) == 7
        with pytest.raises(TimeoutError, match="backlog stayed at 7"):
            await wait_for_backlog_below(client, 7, max_wait_s=0)
    finally:
        await client.aclose()


async def test_the_backlog_is_the_slowest_group_counted_exactly(redis):
    # 2,500 entries, so the counting pages on both sides of each group's position.
    for chunk in range(5):
        await publish_events(redis, events(500, start=1 + chunk * 500))
    ids = [entry_id.decode() for entry_id, _ in await redis.xrange(CATALOG_STREAM)]
    assert await stream_backlog(redis) == 2500  # no group yet: the whole stream

    await redis.xgroup_create(CATALOG_STREAM, "caught-up", id=ids[-1])
    await redis.xgroup_create(CATALOG_STREAM, "halfway", id=ids[1199])
    await redis.xgroup_create(CATALOG_STREAM, "new", id="0")
    await redis.xreadgroup("halfway", "w", {CATALOG_STREAM: ">"}, count=50)  # 50 pending
    # An entry deleted ahead of a group: Redis then cannot estimate its lag at all (nil).
    await redis.xdel(CATALOG_STREAM, ids[2000])

    groups = {g.group: g for g in await group_backlogs(redis)}
    assert {name: (g.pending, g.undelivered) for name, g in groups.items()} == {
        "caught-up": (0, 0),
        "halfway": (50, 2499 - 1200 - 50),
        "new": (0, 2499),
    }
    assert groups["halfway"].lag_hint is None
    assert await stream_backlog(redis) == 2499

    # Capped counting, for backpressure: exact below the cap, the cap at or above it.
    length = await redis.xlen(CATALOG_STREAM)
    for entry_id, cap in ((ids[1199], 5000), (ids[1199], 1249), (ids[1199], 7), ("0-0", 100)):
        truth = len(await redis.xrange(CATALOG_STREAM, f"({entry_id}", "+"))
        got = await count_after(redis, CATALOG_STREAM, entry_id, length=length, cap=cap)
        assert got == min(truth, cap), (entry_id, cap)
    assert await stream_backlog(redis, cap=100) == 100
    assert await stream_backlog(redis, cap=40) == 40  # "halfway" holds 50 pending: no counting
    assert await stream_backlog(redis, cap=5000) == 2499
