"""A search service (two replicas where a test asks) over a real Chroma collection written by
the real indexer, the changelog on a real Redis, and the gateway in front."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_shared.chroma import open_collection
from tests.integration.search.movies import MOVIES
from tests.support.asgi import serve
from tests.support.search import Catalog, search_replica


@pytest.fixture
async def catalog(chroma_url, collection_name, encoder, redis) -> Catalog:
    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    cat = Catalog(CatalogIndexer(collection, encoder, Ledger(redis, "test:ledger")), redis)
    await cat.put(MOVIES, announce=False)  # already in Chroma when the replicas load
    return cat


@pytest.fixture
async def stack(
    redis_url, chroma_url, collection_name, encoder, catalog
) -> AsyncIterator[dict[str, str]]:
    async with search_replica(redis_url, chroma_url, collection_name, encoder) as search_url:
        gateway = create_gateway(GatewaySettings(search_url=search_url, redis_url=redis_url))
        async with serve(gateway) as gateway_url:
            yield {"search": search_url, "gateway": gateway_url}
