"""The gateway's admin API over a model migration (API key): status, switch and rollback, with
a 409 saying why when the migration is not at that point, and the progress in /v1/stats. Real
Redis; the migration's state as the embedders leave it."""

from __future__ import annotations

import time

import httpx
import pytest

import devstack
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_shared.migration import read_live, state_key
from tests.support.asgi import serve

pytestmark = pytest.mark.integration

KEY = "migration-admin-key"


def state(logical: str, **fields: str) -> dict[str, str]:
    return {
        "phase": "copying",
        "source_collection": logical,
        "source_model": "all-MiniLM-L6-v2@5.0.0+9e9ef2af17f8",
        "source_model_source": "stock",
        "target_collection": f"{logical}--stock-alt-4b24b8d11891",
        "target_model": "stock-alt@test+4b24b8d11891",
        "target_model_source": "/models/stock-alt",
        "ledger_entries": "40",
        "scanned": "10",
        "copied": "9",
        "verify_interval_s": "30.0",
        "started_at": str(int(time.time() * 1000)),
        **fields,
    }


async def test_status_switch_and_rollback_through_the_admin_api(redis, redis_url, collection_name):
    dead = f"http://127.0.0.1:{devstack.free_port()}"  # no search or ingest: stats says so
    settings = GatewaySettings(
        redis_url=redis_url,
        chroma_collection=collection_name,
        search_url=dead,
        ingest_url=dead,
        api_keys=KEY,
    )
    async with serve(create_gateway(settings)) as url, httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/v1/admin/migration")).status_code == 401
        assert (await c.post("/v1/admin/migration/switch")).status_code == 401
        wrong = await c.get("/v1/admin/migration", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        auth = {"X-API-Key": KEY}

        r = await c.get("/v1/admin/migration", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"live_collection": collection_name, "migration": None}
        r = await c.post("/v1/admin/migration/switch", headers=auth)
        assert r.status_code == 409
        assert r.json()["detail"] == "no migration in progress"

        key = state_key(collection_name)
        await redis.hset(key, mapping=state(collection_name))
        r = await c.get("/v1/admin/migration", headers=auth)
        body = r.json()["migration"]
        assert (body["phase"], body["coverage_percent"]) == ("copying", 25.0)
        stats = (await c.get("/v1/stats")).json()
        assert stats["migration"]["target"]["model"] == "stock-alt@test+4b24b8d11891"
        assert "search" in stats["unavailable"]
        r = await c.post("/v1/admin/migration/switch", headers=auth)
        assert r.status_code == 409
        assert "not covered yet (phase copying)" in r.json()["detail"]
        r = await c.post("/v1/admin/migration/rollback", headers=auth)
        assert r.status_code == 409
        assert "nothing to roll back" in r.json()["detail"]
        assert (await read_live(redis, collection_name)).collection == collection_name

        now = str(int(time.time() * 1000))
        await redis.hset(
            key, mapping={"phase": "ready", "live": "40", "missing": "0", "verified_at": now}
        )
        r = await c.post("/v1/admin/migration/switch", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["phase"] == "switched"
        assert r.json()["live_collection"] == f"{collection_name}--stock-alt-4b24b8d11891"
        live = await read_live(redis, collection_name)
        assert (live.collection, live.model, live.model_source) == (
            f"{collection_name}--stock-alt-4b24b8d11891",
            "stock-alt@test+4b24b8d11891",
            "/models/stock-alt",
        )
        r = await c.post("/v1/admin/migration/switch", headers=auth)
        assert r.status_code == 409
        assert "already switched" in r.json()["detail"]

        r = await c.post("/v1/admin/migration/rollback", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["phase"] == "ready"
        assert (await read_live(redis, collection_name)).collection == collection_name
        r = await c.post("/v1/admin/migration/rollback", headers=auth)
        assert r.status_code == 409
        assert "not switched (phase ready)" in r.json()["detail"]
