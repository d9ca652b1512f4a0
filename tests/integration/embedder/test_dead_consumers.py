"""Dead consumers do not pile up in the group: a replica killed or restarted leaves its consumer
name behind (a restarted replica gets a new one), and after five restarts the group held five
names for one live worker. Against real redis-server and chroma processes."""

from __future__ import annotations

import httpx
import pytest

from marquee_embedder.app import create_app
from marquee_embedder.streams import (
    delete_consumer_without_pending,
    heartbeat,
    remove_dead_consumers,
)
from marquee_shared.events import CATALOG_STREAM
from marquee_shared.streams import publish_events
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import fast_settings
from tests.support.movies import fetched
from tests.support.movies import numbered as movies
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GROUP = "embedders"


async def consumer_names(redis) -> set[str]:  # type: ignore[no-untyped-def]
    return {c["name"].decode() for c in await redis.xinfo_consumers(CATALOG_STREAM, GROUP)}


async def gauge(base_url: str, name: str) -> float | None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(base_url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_dead_consumers_are_deleted_once_their_entries_are_claimed_and_live_ones_counted(
    redis, redis_url, chroma_url, collection_name, encoder
):
    await redis.xgroup_create(CATALOG_STREAM, GROUP, id="0", mkstream=True)
    await publish_events(redis, [fetched(m) for m in movies(3)])
    # Killed holding a batch: its entries must be claimed and applied before it goes.
    await redis.xreadgroup(GROUP, "killed-worker", {CATALOG_STREAM: ">"}, count=3)
    # Stopped cleanly long ago, nothing pending.
    await redis.xgroup_createconsumer(CATALOG_STREAM, GROUP, "stopped-worker")
    # Another live replica with nothing to do: idle as long as the dead ones (Redis 7.0 counts
    # idle from the last read that returned entries), but it sends its heartbeat.
    await redis.xgroup_createconsumer(CATALOG_STREAM, GROUP, "quiet-replica")
    await heartbeat(redis, CATALOG_STREAM, GROUP, "quiet-replica", keep_ms=60_000)
    await publish_events(redis, [fetched(m) for m in movies(2, start=20_000)])

    settings = fast_settings(redis_url, chroma_url, collection_name, dead_consumer_idle_ms=1500)
    app = create_app(settings, encoder=encoder)
    async with serve(app) as url:

        async def only_live_ones_left() -> bool:
            await heartbeat(redis, CATALOG_STREAM, GROUP, "quiet-replica", keep_ms=60_000)
            return await consumer_names(redis) == {settings.consumer_name, "quiet-replica"}

        await wait_until(only_live_ones_left, timeout=60, what="dead consumers deleted")
        assert (await redis.xpending(CATALOG_STREAM, GROUP))["pending"] == 0

        async def two_live() -> bool:
            await heartbeat(redis, CATALOG_STREAM, GROUP, "quiet-replica", keep_ms=60_000)
            return await gauge(url, "marquee_embedder_group_consumers") == 2.0

        await wait_until(two_live, what="the live count exposed")
        deleted = await gauge(url, "marquee_embedder_consumers_deleted_total")
        assert deleted is not None
        assert deleted >= 2
    assert chroma_collection(chroma_url, collection_name).count() == 5


async def test_a_consumer_that_holds_pending_entries_is_never_deleted(redis):
    await redis.xgroup_create(CATALOG_STREAM, GROUP, id="0", mkstream=True)
    await publish_events(redis, [fetched(m) for m in movies(2)])
    await redis.xreadgroup(GROUP, "holder", {CATALOG_STREAM: ">"}, count=2)
    await redis.xgroup_createconsumer(CATALOG_STREAM, GROUP, "empty")

    async def both_idle() -> bool:
        consumers = await redis.xinfo_consumers(CATALOG_STREAM, GROUP)
        return len(consumers) == 2 and all(c["idle"] >= 50 for c in consumers)

    await wait_until(both_idle, what="both consumers idle for 50 ms")
    removed = await remove_dead_consumers(redis, CATALOG_STREAM, GROUP, keep="me", dead_after_ms=50)
    assert removed == ["empty"]
    assert await consumer_names(redis) == {"holder"}
    assert not await delete_consumer_without_pending(redis, CATALOG_STREAM, GROUP, "holder")
    assert await consumer_names(redis) == {"holder"}
    assert (await redis.xpending(CATALOG_STREAM, GROUP))["pending"] == 2
