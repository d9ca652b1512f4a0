"""The ingest service (uvicorn, its lifespan, the schedule) against real Redis and the fake TMDB."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from marquee_ingest.app import create_app
from marquee_ingest.settings import IngestSettings
from marquee_shared.events import CATALOG_STREAM
from tests.fakes.tmdb import FakeTmdb
from tests.support.asgi import serve

pytestmark = pytest.mark.integration

DEMO_SIZE = sum(
    1
    for line in resources.files("marquee_ingest")
    .joinpath("data/demo_catalog.jsonl")
    .read_text()
    .splitlines()
    if line.strip()
)


@pytest.fixture
def service_settings(settings: IngestSettings) -> Callable[..., IngestSettings]:
    def make(**updates: Any) -> IngestSettings:
        defaults: dict[str, Any] = {
            "sync_interval_s": 0,  # off unless a test turns it on
            "sync_initial_pages": 3,
            "tmdb_max_retries": 2,
        }
        return settings.model_copy(update={**defaults, **updates})

    return make


@contextlib.asynccontextmanager
async def running(settings: IngestSettings, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(settings, **options)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


async def wait_for(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """Poll GET /admin/sync until ``done(status)``; the last status otherwise (then failed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status: dict[str, Any] = (await client.get("/admin/sync")).json()
        if done(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the status never got there within {timeout}s: {status}")
        await asyncio.sleep(0.05)


def finished(run_id: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        last = status.get("last_run") or {}
        return last.get("run_id") == run_id and not status["running"]

    return check


async def test_without_tmdb_credentials_it_serves_health_and_status_only(
    service_settings: Callable[..., IngestSettings], redis: Redis
) -> None:
    settings = service_settings(tmdb_api_key=None, tmdb_read_token=None, sync_interval_s=3600)
    async with running(settings) as client:
        assert (await client.get("/health")).json() == {"status": "ok", "service": "ingest"}
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"redis": "ok"}
        assert "marquee_ingest_sync_runs_total" in (await client.get("/metrics")).text

        status = (await client.get("/admin/sync")).json()
        assert status["configured"] is False
        assert status["schedule"] is None  # no key, no schedule
        assert status["running"] is False
        assert status["last_success_at"] is None
        assert status["catalog_size"] == 0

        refused = await client.post("/admin/sync")
        assert refused.status_code == 409
        assert "no TMDB credentials" in refused.json()["detail"]
    assert await redis.xlen(CATALOG_STREAM) == 0


async def test_an_admin_trigger_runs_a_sync_and_the_status_reports_it(
    service_settings: Callable[..., IngestSettings], redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    async with running(service_settings()) as client:
        started = await client.post("/admin/sync")
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        status = await wait_for(client, finished(run_id))

    run = status["last_run"]
    assert run["outcome"] == "succeeded"
    assert run["trigger"] == "admin"
    assert run["mode"] == "initial"
    assert run["published_fetched"] == 45
    assert status["catalog_size"] == 45
    assert status["last_success_at"] == run["finished_at"]
    assert status["watermark"] is not None
    assert status["schedule"] is None
    assert await redis.xlen(CATALOG_STREAM) == 45


async def test_a_second_trigger_while_a_sync_runs_is_refused(
    service_settings: Callable[..., IngestSettings], redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    fake_tmdb.stall_next(1, 1.0, path="/movie/popular")
    async with running(service_settings()) as client:
        # Two at once: the second must not slip in before the first has taken the lock.
        first, second = sorted(
            await asyncio.gather(client.post("/admin/sync"), client.post("/admin/sync")),
            key=lambda r: r.status_code,
        )
        assert (first.status_code, second.status_code) == (202, 409)
        assert "already running" in second.json()["detail"]
        third = await client.post("/admin/sync")  # and while the run is under way
        assert third.status_code == 409
        in_flight = (await client.get("/admin/sync")).json()
        assert in_flight["running"] is True
        assert in_flight["current_run"]["run_id"] == first.json()["run_id"]
        await wait_for(client, finished(first.json()["run_id"]))
    assert await redis.xlen(CATALOG_STREAM) == 45


async def test_two_instances_started_together_run_one_scheduled_sync(
    service_settings: Callable[..., IngestSettings], redis: Redis, fake_tmdb: FakeTmdb
) -> None:
    one = service_settings(sync_interval_s=3600, instance_name="ingest-one")
    two = service_settings(sync_interval_s=3600, instance_name="ingest-two")
    async with running(one, poll_seconds=0.1) as a, running(two, poll_seconds=0.1) as b:
        # Both schedulers found the sync due at startup; once the sync is done, both agree
        # the next one is an interval after it.
        def settled(status: dict[str, Any]) -> bool:
            next_run = status["next_run_at"]
            return (
                status["last_success_at"] is not None
                and next_run is not None
                and datetime.fromisoformat(next_run) > datetime.now(UTC)
            )

        status_a = await wait_for(a, settled)
        status_b = await wait_for(b, settled)

    assert status_a["schedule"] == status_b["schedule"] == "every 3600s"
    assert status_a["next_run_at"] == status_b["next_run_at"]
    assert status_a["last_run"]["trigger"] == "schedule"
    assert await redis.xlen(CATALOG_STREAM) == 45  # one initial load, not two
    assert len(fake_tmdb.requests_to("/movie/popular")) == 3


async def test_a_fresh_stack_is_seeded_with_the_demo_catalog_once(
    service_settings: Callable[..., IngestSettings], redis: Redis
) -> None:
    seeding = service_settings(tmdb_api_key=None, sync_seed_demo=True)
    apps = [create_app(seeding), create_app(seeding), create_app(seeding)]
    async with serve(apps[0]), serve(apps[1]):
        await seeding_done(apps[0], apps[1])
    async with serve(apps[2]):  # a restart: the catalog is not empty any more
        await seeding_done(apps[2])

    assert sorted(app.state.sync_service.seeded for app in apps) == [False, False, True]
    assert await redis.xlen(CATALOG_STREAM) == DEMO_SIZE
    assert await redis.hlen("marquee:catalog:v1:ingest:published") == DEMO_SIZE


async def seeding_done(*apps: Any) -> None:
    for _ in range(600):
        if all(app.state.sync_service.seeded is not None for app in apps):
            return
        await asyncio.sleep(0.05)
    pytest.fail("the demo seeding did not finish within 30s")


async def test_the_internal_token_guards_the_admin_endpoints(
    service_settings: Callable[..., IngestSettings], redis: Redis
) -> None:
    settings = service_settings(internal_token=SecretStr("s3cret"))
    async with running(settings) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/admin/sync")).status_code == 401
        assert (await client.post("/admin/sync")).status_code == 401
        ok = await client.get("/admin/sync", headers={"X-Internal-Token": "s3cret"})
        assert ok.status_code == 200
