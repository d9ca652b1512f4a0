"""The sync's admin API and /v1/stats through the real gateway, with the real ingest and search
services behind it (the internal token on), real Redis, Chroma and the fake TMDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_ingest.app import create_app as create_ingest
from marquee_ingest.settings import IngestSettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.api import SyncStatus
from marquee_shared.chroma import open_collection
from marquee_shared.events import CATALOG_STREAM, DEAD_LETTER_STREAM, decode_event
from marquee_shared.model.resolve import resolve_model
from tests.fakes.tmdb import FakeTmdb
from tests.support.asgi import serve

pytestmark = pytest.mark.integration

KEY = "admin-key"
TOKEN = SecretStr("internal-secret")


@pytest.fixture
def stack(
    redis_url: str,
    chroma_url: str,
    collection_name: str,
    encoder: Any,
    redis: Redis,
    settings: IngestSettings,
    fake_tmdb: FakeTmdb,
    unused_redis_url: str,
) -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """Starts search, ingest and a gateway in front; ``ingest_up=False`` leaves ingest out."""

    @contextlib.asynccontextmanager
    async def start(*, ingest_up: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        search = create_search(
            SearchSettings(
                chroma_url=chroma_url,
                chroma_collection=collection_name,
                redis_url=redis_url,
                internal_token=TOKEN,
            ),
            encoder=encoder,
        )
        ingest = create_ingest(
            settings.model_copy(
                update={
                    "sync_interval_s": 0,
                    "sync_initial_pages": 3,
                    "internal_token": TOKEN,
                }
            )
        )
        async with contextlib.AsyncExitStack() as running:
            search_url = await running.enter_async_context(serve(search))
            # A closed port stands for an ingest service that is down.
            ingest_url = (
                await running.enter_async_context(serve(ingest))
                if ingest_up
                else unused_redis_url.replace("redis://", "http://").removesuffix("/0")
            )
            gateway = create_gateway(
                GatewaySettings(
                    search_url=search_url,
                    ingest_url=ingest_url,
                    redis_url=redis_url,
                    api_keys=KEY,
                    internal_token=TOKEN,
                )
            )
            gateway_url = await running.enter_async_context(serve(gateway))
            client = await running.enter_async_context(
                httpx.AsyncClient(base_url=gateway_url, timeout=30)
            )
            yield client

    return start


async def sync_now(gateway: httpx.AsyncClient) -> dict[str, Any]:
    started = await gateway.post("/v1/admin/sync", headers={"X-API-Key": KEY})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    for _ in range(600):
        status = await gateway.get("/v1/admin/sync", headers={"X-API-Key": KEY})
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        if (body.get("last_run") or {}).get("run_id") == run_id and not body["running"]:
            return body
        await asyncio.sleep(0.05)
    pytest.fail(f"sync {run_id} did not finish within 30s")


async def test_the_admin_endpoints_need_the_api_key(stack: Callable[..., Any]) -> None:
    async with stack() as gateway:
        for method in ("GET", "POST"):
            missing = await gateway.request(method, "/v1/admin/sync")
            assert missing.status_code == 401
            wrong = await gateway.request(method, "/v1/admin/sync", headers={"X-API-Key": "no"})
            assert wrong.status_code == 403


async def test_a_sync_started_through_the_gateway_and_its_status(
    stack: Callable[..., Any], redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    async with stack() as gateway:
        status = await sync_now(gateway)

        SyncStatus.model_validate(status)  # the gateway's documented model fits
        assert status["last_run"]["outcome"] == "succeeded"
        assert status["last_run"]["trigger"] == "admin"
        assert status["catalog_size"] == 45
        assert await redis.xlen(CATALOG_STREAM) == 45

        # A second trigger while one runs: the ingest service's 409 is relayed.
        fake_tmdb.change_movie(1001, overview="Changed.")
        fake_tmdb.stall_next(1, 1.0, path="/movie/changes")
        first = await gateway.post("/v1/admin/sync", headers={"X-API-Key": KEY})
        second = await gateway.post("/v1/admin/sync", headers={"X-API-Key": KEY})
        assert first.status_code == 202
        assert second.status_code == 409
        assert "already running" in second.json()["detail"]


async def test_stats_report_coverage_backlog_dead_letters_and_freshness(
    stack: Callable[..., Any],
    redis: Redis,
    chroma_url: str,
    collection_name: str,
    encoder: Any,
) -> None:
    async with stack() as gateway:
        empty = (await gateway.get("/v1/stats")).json()
        assert empty["catalog_size"] == 0
        assert empty["coverage_percent"] is None  # nothing to cover yet
        assert empty["last_sync_at"] is None
        assert empty["freshness_seconds"] is None
        assert empty["stream"]["backlog"] == 0

        status = await sync_now(gateway)

        # An embedder took 10 of the 45 events, indexed them and acknowledged 6 so far.
        await redis.xgroup_create(CATALOG_STREAM, "embedders", id="0")
        ((_, entries),) = await redis.xreadgroup("embedders", "e1", {CATALOG_STREAM: ">"}, 10)
        _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
        indexer = CatalogIndexer(collection, encoder, Ledger(redis, "test:ledger"))
        await indexer.apply([decode_event(fields) for _, fields in entries])
        await redis.xack(CATALOG_STREAM, "embedders", *[entry_id for entry_id, _ in entries[:6]])
        await redis.xadd(DEAD_LETTER_STREAM, {"reason": "test"})
        await redis.xadd(DEAD_LETTER_STREAM, {"reason": "test"})

        response = await gateway.get("/v1/stats")  # public: no key

    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["catalog_size"] == 45
    assert stats["embedded"] == 10
    assert stats["coverage_percent"] == 22.22
    assert stats["stream"] == {
        "name": CATALOG_STREAM,
        "length": 45,
        "backlog": 35 + 4,
        "lag": 35,
        "pending": 4,
        "dead_letters": 2,
    }
    assert stats["last_sync_at"] == status["last_success_at"]
    age = (datetime.now(UTC) - datetime.fromisoformat(status["last_success_at"])).total_seconds()
    assert 0 <= stats["freshness_seconds"] <= age
    assert stats["sync_running"] is False
    assert stats["last_sync_outcome"] == "succeeded"
    assert stats["last_sync_error"] is None
    assert stats["unavailable"] == {}
    # The model search serves (and its collection was created with): the stock one.
    assert stats["model"] == str(resolve_model("stock")[1])


async def test_stats_still_answer_with_ingest_down(stack: Callable[..., Any]) -> None:
    async with stack(ingest_up=False) as gateway:
        stats = await gateway.get("/v1/stats")
        admin = await gateway.get("/v1/admin/sync", headers={"X-API-Key": KEY})

    assert stats.status_code == 200
    body = stats.json()
    assert body["catalog_size"] is None
    assert body["coverage_percent"] is None
    assert body["embedded"] == 0
    assert body["stream"]["dead_letters"] == 0
    assert "the ingest service is unavailable" in body["unavailable"]["ingest"]
    assert admin.status_code == 503
    assert "the ingest service is unavailable" in admin.json()["detail"]
