"""The internal token between a real gateway and a real search service."""

from __future__ import annotations

import httpx
import pytest

from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from tests.support.asgi import serve

pytestmark = pytest.mark.integration

TOKEN = "internal-s3cret"


@pytest.fixture
async def guarded_search(chroma_url, redis_url, gateway_collection, encoder):
    settings = SearchSettings(
        chroma_url=chroma_url,
        chroma_collection=gateway_collection,
        redis_url=redis_url,
        internal_token=TOKEN,
    )
    async with serve(create_search(settings, encoder=encoder)) as url:
        yield url


async def test_search_refuses_callers_without_the_token(guarded_search):
    async with httpx.AsyncClient(base_url=guarded_search) as client:
        r = await client.get("/search", params={"q": "shark"})
        assert r.status_code == 401
        assert r.json() == {"detail": "missing or invalid X-Internal-Token"}
        assert (await client.get("/movies/578")).status_code == 401
        r = await client.get("/movies/578", headers={"X-Internal-Token": TOKEN})
        assert r.status_code == 200
        assert r.json()["title"] == "Jaws"
        # What probes and Prometheus call stays open.
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


async def test_the_gateway_sends_the_token(gateway, guarded_search):
    async with (
        gateway(search_url=guarded_search, internal_token=TOKEN) as gw,
        httpx.AsyncClient(base_url=gw) as client,
    ):
        r = await client.get("/v1/search", params={"q": "a shark off a beach", "k": 1})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["tmdb_id"] == 578
        assert (await client.get("/ready")).json()["checks"]["search"] == "ok"


@pytest.mark.parametrize("token", [None, "not-the-same"])
async def test_a_token_mismatch_is_a_503_and_an_unready_gateway_not_a_401(
    gateway, guarded_search, token
):
    async with (
        gateway(search_url=guarded_search, internal_token=token) as gw,
        httpx.AsyncClient(base_url=gw) as client,
    ):
        r = await client.get("/v1/movies/578")
        # The public client did nothing wrong: no 401 that would ask it to authenticate.
        assert r.status_code == 503
        assert r.json()["detail"] == (
            "the search service is unavailable: it refused the gateway's internal token"
        )
        ready = await client.get("/ready")
        if token is not None:  # a wrong token is refused on /ready too, so it shows here
            assert ready.status_code == 503
            assert "internal token" in ready.json()["checks"]["search"]
