"""A real search service (over a real Chroma index written by the real indexer) served once per
module, and a factory for gateways in front of it with whatever limits a test needs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.chroma import open_collection
from marquee_shared.events import Movie, MovieFetched
from tests.support.asgi import serve
from tests.support.gateway import API_KEY, OTHER_KEY, Gateway

MOVIES = [
    Movie(
        tmdb_id=578,
        title="Jaws",
        year=1975,
        genres=["Horror", "Thriller"],
        overview="A police chief, a marine biologist and a fisherman hunt a great white shark "
        "that keeps killing swimmers off a summer resort island.",
        directors=["Steven Spielberg"],
        cast=["Roy Scheider", "Robert Shaw"],
        vote_average=7.7,
        vote_count=9000,
        original_language="en",
    ),
    Movie(
        tmdb_id=129,
        title="Spirited Away",
        year=2001,
        genres=["Animation", "Family", "Fantasy"],
        overview="A ten-year-old girl trapped in a bathhouse for spirits works to free her "
        "parents, who were turned into pigs.",
        directors=["Hayao Miyazaki"],
        vote_average=8.5,
        vote_count=15000,
        original_language="ja",
    ),
    Movie(
        tmdb_id=348,
        title="Alien",
        year=1979,
        genres=["Horror", "Science Fiction"],
        overview="The crew of a commercial space tug is stalked by a deadly creature that got "
        "aboard after they answered a distress signal.",
        directors=["Ridley Scott"],
        vote_average=8.1,
        vote_count=14000,
        original_language="en",
    ),
    Movie(
        tmdb_id=862,
        title="Toy Story",
        year=1995,
        genres=["Animation", "Comedy", "Family"],
        overview="A pull-string cowboy doll feels threatened when a flashy space ranger action "
        "figure becomes the boy's favourite toy.",
        directors=["John Lasseter"],
        vote_average=8.0,
        vote_count=17000,
        original_language="en",
    ),
]


@pytest.fixture(scope="module")
async def gateway_collection(chroma_url: str, redis_url: str, encoder: Any) -> str:
    """One Chroma collection with MOVIES for this module's searches."""
    name = f"gateway_{uuid.uuid4().hex[:10]}"
    _, collection = await open_collection(httpx.URL(chroma_url), name)  # type: ignore[arg-type]
    redis = Redis.from_url(redis_url)
    try:
        await CatalogIndexer(collection, encoder, Ledger(redis, f"{name}:ledger")).apply(
            [MovieFetched(source="test", movie=m, occurred_at=datetime.now(UTC)) for m in MOVIES]
        )
    finally:
        await redis.aclose()
    return name


@pytest.fixture(scope="module")
async def search_url(
    chroma_url: str, redis_url: str, gateway_collection: str, encoder: Any
) -> AsyncIterator[str]:
    """The real search service, no internal token (tests that need one start their own)."""
    settings = SearchSettings(
        chroma_url=chroma_url, chroma_collection=gateway_collection, redis_url=redis_url
    )
    async with serve(create_search(settings, encoder=encoder)) as url:
        yield url


@pytest.fixture
def gateway(redis_url: str, search_url: str) -> Gateway:
    """``async with gateway(**settings) as url``: a real gateway in front of the real search,
    on its own port; anything in GatewaySettings can be overridden."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        values: dict[str, Any] = {
            "search_url": search_url,
            "redis_url": redis_url,
            "api_keys": f"{API_KEY},{OTHER_KEY}",
            "log_format": "console",
        }
        values.update(overrides)
        async with serve(create_gateway(GatewaySettings(**values))) as url:
            yield url

    return start
