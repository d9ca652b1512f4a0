"""Search and the model id stamped on the collection: a collection search creates carries its
model; the id is in /ready, /metrics and the gateway's /v1/stats; a collection of another
model stops startup, and one stamped with another model after startup (an old collection the
embedders stamp late) turns the replica unready and its answers into 503s naming both ids."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_search.app import create_app as create_search
from marquee_shared.chroma import MODEL_KEY
from marquee_shared.model.resolve import resolve_model
from tests.support.asgi import serve
from tests.support.chroma import chroma_client, create_collection, stamp_of
from tests.support.search import Catalog, search_settings

pytestmark = pytest.mark.integration

OTHER = "movie-tuned@1+0123456789ab"


def stock() -> str:
    return str(resolve_model("stock")[1])


async def test_a_collection_search_creates_carries_its_model_which_it_reports(
    redis, redis_url, chroma_url, collection_name, encoder
):
    app = create_search(search_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text
        stats = (await client.get("/stats")).json()
        gateway = create_gateway(GatewaySettings(search_url=url, redis_url=redis_url))
        async with serve(gateway) as gateway_url:
            overall = (await client.get(gateway_url + "/v1/stats")).json()

    assert ready.status_code == 200, ready.text
    assert ready.json()["model"] == stock()
    assert ready.json()["checks"]["model"] == "ok"
    assert f'marquee_model_info{{model="{stock()}",service="search"}} 1.0' in metrics
    assert stats == {"movies": 0, "model": stock(), "collection_model": stock()}
    assert overall["model"] == stock()
    assert stamp_of(chroma_url, collection_name) == stock()


async def test_refuses_to_start_against_a_collection_of_another_model(
    redis, redis_url, chroma_url, collection_name, encoder
):
    create_collection(chroma_url, collection_name, OTHER)
    app = create_search(search_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    with pytest.raises(RuntimeError, match="exited during startup") as refused:
        async with serve(app):
            pass
    reason = str(refused.value)
    assert f"holds vectors of model {OTHER}" in reason
    assert f"configured with model {stock()}" in reason
    assert "MARQUEE_SEARCH_MODEL" in reason


async def test_an_old_collection_is_checked_once_the_embedders_stamp_it(
    redis, redis_url, chroma_url, collection_name, encoder, catalog: Catalog
):
    # ``catalog`` wrote the movies without a stamp, as before model ids.
    assert stamp_of(chroma_url, collection_name) is None
    app = create_search(search_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/stats")).json()["collection_model"] is None
        assert (await client.get("/search", params={"q": "shark"})).status_code == 200

        collection = chroma_client(chroma_url).get_collection(
            collection_name, embedding_function=None
        )
        collection.modify(metadata={MODEL_KEY: OTHER})  # an embedder of another model stamped it

        deadline = asyncio.get_running_loop().time() + 20
        while (ready := await client.get("/ready")).status_code == 200:
            assert asyncio.get_running_loop().time() < deadline, "the new stamp went unnoticed"
            await asyncio.sleep(0.2)
        search = await client.get("/search", params={"q": "shark"})

    assert ready.status_code == 503
    assert OTHER in ready.json()["checks"]["model"]
    assert stock() in ready.json()["checks"]["model"]
    assert search.status_code == 503
    assert OTHER in search.json()["detail"]
    assert stock() in search.json()["detail"]
