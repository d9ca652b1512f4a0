"""Delivery guarantees of the embedder against real redis-server and chroma processes:
abandoned entries are claimed, poison events are parked and replayable, a vanished group is
recreated, the stream is trimmed only below what every group acknowledged, publishers are held
back when the backlog is full, and an old version never beats a newer one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ResponseError

from marquee_embedder.app import create_app
from marquee_shared.deadletters import list_dead_letters, replay_dead_letters
from marquee_shared.events import CATALOG_STREAM, Movie, MovieDeleted
from marquee_shared.streams import publish_events, stream_backlog
from tests.fakes.faulty_proxy import FaultyProxy
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import fast_settings, group_done
from tests.support.movies import JAWS, MATRIX, fetched
from tests.support.movies import numbered as movies
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def test_entries_left_pending_by_a_crashed_consumer_are_claimed_and_applied(
    redis, redis_url, chroma_url, collection_name, encoder
):
    await redis.xgroup_create(CATALOG_STREAM, "embedders", id="0", mkstream=True)
    await publish_events(redis, [fetched(m) for m in movies(5)])
    # A worker that read these and died before acknowledging (kill -9 mid-batch).
    await redis.xreadgroup("embedders", "crashed-worker", {CATALOG_STREAM: ">"}, count=5)
    assert (await redis.xpending(CATALOG_STREAM, "embedders"))["pending"] == 5

    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_until(
            lambda: _pending_is(redis, 0), what="crashed worker's entries acknowledged"
        )
    assert chroma_collection(chroma_url, collection_name).count() == 5


async def _pending_is(redis, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool((await redis.xpending(CATALOG_STREAM, "embedders"))["pending"] == n)


async def test_a_poison_event_is_dead_lettered_after_n_deliveries_and_replays_after_a_fix(
    redis, redis_url, chroma_url, collection_name, encoder
):
    poison = Movie(tmdb_id=666, title="POISON-666", year=2001, overview="Chroma refuses this one.")
    async with FaultyProxy(chroma_url).running() as proxy:
        proxy.poison_markers.add(b"POISON-666")
        app = create_app(fast_settings(redis_url, proxy.url, collection_name), encoder=encoder)
        async with serve(app):
            await publish_events(redis, [fetched(JAWS), fetched(poison), fetched(MATRIX)])
            letters = await wait_until(
                lambda: list_dead_letters(redis), what="poison event dead-lettered"
            )
            assert len(letters) == 1
            assert '"tmdb_id":666' in letters[0].fields["event"].replace(" ", "")
            assert letters[0].deliveries >= 2
            assert "injected fault" in letters[0].reason
            await wait_until(lambda: _pending_is(redis, 0), what="everything acknowledged")
            # The other events of the poisoned batch went through.
            col = chroma_collection(chroma_url, collection_name)
            assert sorted(col.get(ids=["578", "603", "666"])["ids"]) == ["578", "603"]

            proxy.poison_markers.clear()  # the fix
            replayed = await replay_dead_letters(redis, [letters[0].id])
            assert list(replayed) == [letters[0].id]
            await wait_until(lambda: _has(col, "666"), what="replayed event applied")
            assert await list_dead_letters(redis) == []


async def _has(col, record_id: str) -> bool:  # type: ignore[no-untyped-def]
    return col.get(ids=[record_id])["ids"] == [record_id]


async def test_chroma_outage_keeps_events_pending_and_they_apply_when_it_returns(
    redis, redis_url, chroma_url, collection_name, encoder
):
    async with FaultyProxy(chroma_url).running() as proxy:
        app = create_app(fast_settings(redis_url, proxy.url, collection_name), encoder=encoder)
        async with serve(app):
            proxy.down = True
            await publish_events(redis, [fetched(m) for m in movies(20)])
            await wait_until(
                lambda: _pending_is(redis, 20), what="all pending while Chroma is down"
            )
            # The embedder keeps trying (its reads back off), and acknowledges nothing.
            tried = proxy.refused

            async def retried() -> bool:
                return proxy.refused >= tried + 2

            await wait_until(retried, timeout=30, what="the embedder retrying against Chroma")
            assert await _pending_is(redis, 20)
            proxy.down = False
            await wait_until(
                lambda: _pending_is(redis, 0), timeout=60, what="applied after Chroma returned"
            )
    assert chroma_collection(chroma_url, collection_name).count() == 20


async def test_a_vanished_consumer_group_is_recreated_and_consumption_resumes(
    redis, redis_url, chroma_url, collection_name, encoder
):
    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await publish_events(redis, [fetched(JAWS)])
        await wait_until(lambda: _pending_and_lag_zero(redis), what="first event applied")
        await redis.flushdb()  # Redis restarted without persistence: stream and group are gone
        await wait_until(
            lambda: _group_exists(redis), timeout=30, what="the recovery loop recreates the group"
        )
        await publish_events(redis, [fetched(MATRIX)])
        col = chroma_collection(chroma_url, collection_name)
        await wait_until(
            lambda: _has(col, "603"), timeout=30, what="event after group loss applied"
        )


async def _group_exists(redis) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(await redis.xinfo_groups(CATALOG_STREAM))
    except ResponseError:  # no such key: the stream is gone too
        return False


async def _pending_and_lag_zero(redis) -> bool:  # type: ignore[no-untyped-def]
    groups = await redis.xinfo_groups(CATALOG_STREAM)
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0


async def test_trimming_never_drops_an_unacknowledged_entry(
    redis, redis_url, chroma_url, collection_name, encoder
):
    await redis.xgroup_create(CATALOG_STREAM, "embedders", id="0", mkstream=True)
    await publish_events(redis, [fetched(m) for m in movies(3)])
    # Held by a slow consumer of another group: this group must keep it.
    await redis.xgroup_create(CATALOG_STREAM, "audit-readers", id="0")
    held = await redis.xreadgroup("audit-readers", "slow", {CATALOG_STREAM: ">"}, count=1)
    held_id = held[0][1][0][0]
    await publish_events(redis, [fetched(m) for m in movies(20, start=20_000)])

    settings = fast_settings(redis_url, chroma_url, collection_name, claim_idle_ms=3_600_000)
    app = create_app(settings, encoder=encoder)
    async with serve(app):
        await wait_until(lambda: group_done(redis, "embedders"), what="embedders caught up")

        async def trimmed_to_the_held_entry() -> bool:
            first = (await redis.xrange(CATALOG_STREAM, count=1))[0][0]
            return bool(first == held_id)

        # Recovery ticks trim what they safely can: everything below the held entry, not it.
        await wait_until(trimmed_to_the_held_entry, what="trimmed up to the held entry")
        assert (await redis.xrange(CATALOG_STREAM, count=1))[0][0] == held_id
        await redis.xack(CATALOG_STREAM, "audit-readers", held_id)
        await redis.xgroup_destroy(CATALOG_STREAM, "audit-readers")
        await wait_until(lambda: _stream_len_at_most(redis, 1), what="stream trimmed once acked")
    assert chroma_collection(chroma_url, collection_name).count() == 23


async def _stream_len_at_most(redis, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await redis.xlen(CATALOG_STREAM) <= n)


async def test_backpressure_holds_publishers_at_the_bound_and_nothing_is_lost(
    redis, redis_url, chroma_url, collection_name, encoder
):
    bound = 40
    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, await stream_backlog(redis))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        await publish_events(
            redis, [fetched(m) for m in movies(200)], pipeline_size=10, max_backlog=bound
        )
        await wait_until(lambda: group_done(redis, "embedders"), timeout=120, what="drained")
        watcher.cancel()
    assert chroma_collection(chroma_url, collection_name).count() == 200
    assert peak <= bound + 10  # at most one pipeline over the bound


async def test_deletion_then_late_older_fetch_stays_deleted_and_newest_version_wins(
    redis, redis_url, chroma_url, collection_name, encoder
):
    now = datetime.now(UTC)
    v1 = fetched(
        JAWS.model_copy(update={"vote_average": 6.0}), occurred_at=now - timedelta(minutes=3)
    )
    v2 = fetched(
        JAWS.model_copy(update={"vote_average": 7.0}), occurred_at=now - timedelta(minutes=2)
    )
    gone = MovieDeleted(source="test", tmdb_id=578, occurred_at=now - timedelta(minutes=1))
    m1 = fetched(
        MATRIX.model_copy(update={"vote_average": 5.0}), occurred_at=now - timedelta(minutes=2)
    )
    m2 = fetched(
        MATRIX.model_copy(update={"vote_average": 9.0}), occurred_at=now - timedelta(minutes=1)
    )
    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        # Out of order: newest first, then the stale ones, one batch at a time.
        for event in [v2, gone, m2, v1, m1]:
            await publish_events(redis, [event])
            await wait_until(lambda: group_done(redis, "embedders"), what="applied")
    col = chroma_collection(chroma_url, collection_name)
    assert col.get(ids=["578"])["ids"] == []
    assert col.get(ids=["603"], include=["metadatas"])["metadatas"][0]["vote_average"] == 9.0
