"""The embedder app against real redis-server and chroma processes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from marquee_embedder.app import create_app
from marquee_shared.events import (
    CATALOG_STREAM,
    DEAD_LETTER_STREAM,
    MovieDeleted,
)
from marquee_shared.index import movie_from_metadata
from marquee_shared.streams import publish_events
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import settings_for, wait_drained
from tests.support.movies import JAWS, MATRIX, fetched
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def metric(base_url: str, outcome: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(base_url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'marquee_embedder_events_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_events_published_before_the_first_worker_starts_are_indexed(
    redis, redis_url, chroma_url, collection_name, encoder
):
    # Published while no consumer group exists yet: FastStream alone would create the group
    # at the stream's end and never see these.
    await publish_events(redis, [fetched(JAWS), fetched(MATRIX)])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url:
        await wait_drained(redis)
        async with httpx.AsyncClient() as client:
            ready = await client.get(url + "/ready")
        assert ready.status_code == 200, ready.text

    col = chroma_collection(chroma_url, collection_name)
    got = col.get(ids=["578", "603"], include=["metadatas", "embeddings", "documents"])
    assert sorted(got["ids"]) == ["578", "603"]
    by_id = dict(zip(got["ids"], got["metadatas"], strict=True))
    assert movie_from_metadata(by_id["578"]) == JAWS
    assert by_id["578"]["year"] == 1975
    assert by_id["578"]["genre_horror"] is True
    assert by_id["578"]["directors"] == "Steven Spielberg"
    assert by_id["578"]["content_hash"] == JAWS.content_hash()
    vectors = np.asarray(got["embeddings"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert "great white shark" in got["documents"][got["ids"].index("578")]


async def test_unchanged_is_skipped_rating_change_keeps_vector_text_change_reembeds_and_delete_deletes(
    redis, redis_url, chroma_url, collection_name, encoder
):
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url:
        await publish_events(redis, [fetched(JAWS)])
        await wait_drained(redis)
        col = chroma_collection(chroma_url, collection_name)
        first = np.asarray(col.get(ids=["578"], include=["embeddings"])["embeddings"])[0]
        embedded = await metric(url, "embedded")
        unchanged = await metric(url, "unchanged")

        await publish_events(redis, [fetched(JAWS)])  # the same content again
        await wait_drained(redis)
        assert await metric(url, "unchanged") == unchanged + 1
        assert await metric(url, "embedded") == embedded

        rerated = JAWS.model_copy(update={"vote_average": 8.1, "vote_count": 9100})
        await publish_events(redis, [fetched(rerated)])
        await wait_drained(redis)
        got = col.get(ids=["578"], include=["metadatas", "embeddings"])
        assert got["metadatas"][0]["vote_average"] == 8.1
        np.testing.assert_allclose(np.asarray(got["embeddings"])[0], first, atol=1e-6)
        assert await metric(url, "embedded") == embedded

        rewritten = rerated.model_copy(
            update={"overview": "Three men on a small boat hunt a shark."}
        )
        await publish_events(redis, [fetched(rewritten)])
        await wait_drained(redis)
        got = col.get(ids=["578"], include=["embeddings", "documents"])
        assert "small boat" in got["documents"][0]
        assert float(np.dot(np.asarray(got["embeddings"])[0], first)) < 0.999
        assert await metric(url, "embedded") == embedded + 1

        await publish_events(redis, [MovieDeleted(source="test", tmdb_id=578)])
        await wait_drained(redis)
        assert col.get(ids=["578"])["ids"] == []


async def test_an_older_version_never_overwrites_a_newer_one(
    redis, redis_url, chroma_url, collection_name, encoder
):
    now = datetime.now(UTC)
    newer = fetched(JAWS.model_copy(update={"vote_average": 8.0}), occurred_at=now)
    older = fetched(
        JAWS.model_copy(update={"vote_average": 5.0}), occurred_at=now - timedelta(hours=1)
    )
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await publish_events(redis, [newer])
        await wait_drained(redis)
        await publish_events(redis, [older])  # a late redelivery of an older fetch
        await wait_drained(redis)
    got = chroma_collection(chroma_url, collection_name).get(ids=["578"], include=["metadatas"])
    assert got["metadatas"][0]["vote_average"] == 8.0


async def test_invalid_entries_are_dead_lettered_with_reasons_and_acknowledged(
    redis, redis_url, chroma_url, collection_name, encoder
):
    await publish_events(redis, [fetched(MATRIX)])
    bad_year = json.loads(fetched(JAWS).model_dump_json())
    bad_year["movie"]["year"] = 3000
    await redis.xadd(CATALOG_STREAM, {"event": json.dumps(bad_year)})
    await redis.xadd(CATALOG_STREAM, {"event": "{not json"})
    await redis.xadd(CATALOG_STREAM, {"payload": "wrong field"})
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_drained(redis)

    dead = await redis.xrange(DEAD_LETTER_STREAM)
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 3
    assert "movie.fetched.movie.year" in reasons[0]
    assert "Invalid JSON" in reasons[1]
    assert "no 'event' field" in reasons[2]
    assert json.loads(dead[2][1][b"fields"]) == {"payload": "wrong field"}
    # The valid event in the same batch was still applied.
    assert chroma_collection(chroma_url, collection_name).get(ids=["603"])["ids"] == ["603"]


async def test_events_stay_pending_when_chroma_cannot_take_them(
    redis, redis_url, collection_name, encoder, tmp_path
):
    """Acknowledged only after Chroma has it: with Chroma gone, nothing is acked."""
    import devstack

    port = devstack.free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = devstack.chroma_proc(port, tmp_path / "chroma", tmp_path).start()
    try:
        chroma.wait_until(lambda: devstack.http_ok(url + "/api/v2/heartbeat"), "up", 60)
        app = create_app(settings_for(redis_url, url, collection_name), encoder=encoder)
        async with serve(app) as base:
            chroma.stop()
            await publish_events(redis, [fetched(JAWS), fetched(MATRIX)])
            deadline = asyncio.get_running_loop().time() + 30
            pending = 0
            while asyncio.get_running_loop().time() < deadline:
                pending = (await redis.xpending(CATALOG_STREAM, "embedders"))["pending"]
                if pending == 2:
                    break
                await asyncio.sleep(0.1)
            assert pending == 2
            # And they stay pending while the embedder keeps finding Chroma away: nothing is
            # acknowledged by mistake.
            tried = unavailable_batches()
            await wait_until(
                lambda: _more_than(unavailable_batches, tried + 1),
                timeout=30,
                what="another attempt with Chroma away",
            )
            assert (await redis.xpending(CATALOG_STREAM, "embedders"))["pending"] == 2
            async with httpx.AsyncClient() as client:
                ready = await client.get(base + "/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["chroma"] != "ok"
    finally:
        chroma.stop()


async def test_an_event_published_through_faststream_is_understood_too(
    redis, redis_url, chroma_url, collection_name, encoder
):
    """Publishers using FastStream's own envelope (broker.publish) interoperate."""
    from faststream.redis import RedisBroker

    async with RedisBroker(redis_url) as broker:
        await broker.publish(json.loads(fetched(MATRIX).model_dump_json()), stream=CATALOG_STREAM)
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_drained(redis)
    assert chroma_collection(chroma_url, collection_name).get(ids=["603"])["ids"] == ["603"]
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


async def test_written_records_are_announced_on_the_index_changelog(
    redis, redis_url, chroma_url, collection_name, encoder
):
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await publish_events(redis, [fetched(JAWS), fetched(MATRIX)])
        await wait_drained(redis)
        await publish_events(redis, [fetched(JAWS), MovieDeleted(source="test", tmdb_id=603)])
        await wait_drained(redis)
    changes = [
        (f[b"tmdb_id"].decode(), f[b"content_hash"].decode())
        for _, f in await redis.xrange("marquee:index:v1:changes")
    ]
    # The unchanged re-publish of Jaws announces nothing; the deletion announces an empty hash.
    assert sorted(changes[:2]) == sorted(
        [("578", JAWS.content_hash()), ("603", MATRIX.content_hash())]
    )
    assert changes[2:] == [("603", "")]


def unavailable_batches() -> float:
    return sum(
        REGISTRY.get_sample_value("marquee_embedder_index_unavailable_total", {"by": by}) or 0.0
        for by in ("batch", "recovery")
    )


async def _more_than(value: Any, bound: float) -> bool:
    return bool(value() >= bound)
