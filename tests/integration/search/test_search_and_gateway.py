"""Search and the gateway against a real Chroma index (written by the real indexer) and Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.api import MAX_QUERY_CHARS
from marquee_shared.chroma import open_collection
from marquee_shared.events import CATALOG_STREAM, Movie, MovieFetched, decode_event
from tests.support.asgi import serve

pytestmark = pytest.mark.integration

MOVIES = [
    Movie(
        tmdb_id=578,
        title="Jaws",
        year=1975,
        genres=["Horror", "Thriller"],
        overview="A police chief, a marine biologist and a fisherman hunt a great white shark "
        "that keeps killing swimmers off a summer resort island.",
        directors=["Steven Spielberg"],
        vote_average=7.7,
        vote_count=9000,
        original_language="en",
    ),
    Movie(
        tmdb_id=603,
        title="The Matrix",
        year=1999,
        genres=["Action", "Science Fiction"],
        overview="A hacker discovers that everyday life is a simulation run by machines and joins "
        "a rebellion to free humanity.",
        vote_average=8.2,
        vote_count=20000,
        original_language="en",
    ),
    Movie(
        tmdb_id=129,
        title="Spirited Away",
        year=2001,
        genres=["Animation", "Family", "Fantasy"],
        overview="A ten-year-old girl trapped in a bathhouse for spirits works to free her parents, "
        "who were turned into pigs.",
        vote_average=8.5,
        vote_count=15000,
        original_language="ja",
    ),
    Movie(
        tmdb_id=862,
        title="Toy Story",
        year=1995,
        genres=["Animation", "Comedy", "Family"],
        overview="A pull-string cowboy doll feels threatened when a flashy space ranger action "
        "figure becomes the boy's favourite toy.",
        vote_average=8.0,
        vote_count=17000,
        original_language="en",
    ),
    Movie(
        tmdb_id=348,
        title="Alien",
        year=1979,
        genres=["Horror", "Science Fiction"],
        overview="The crew of a commercial space tug is stalked by a deadly creature that got "
        "aboard after they answered a distress signal.",
        vote_average=8.1,
        vote_count=14000,
        original_language="en",
    ),
    Movie(
        tmdb_id=1,
        title="Shark Tale Knockoff",
        year=2010,
        genres=["Comedy"],
        overview="A talking fish pretends to have killed a shark to become famous on the reef.",
        vote_average=3.0,
        vote_count=12,
        original_language="en",
    ),
]


@pytest.fixture
async def stack(
    redis_url, chroma_url, collection_name, encoder, redis
) -> AsyncIterator[dict[str, str]]:
    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    await CatalogIndexer(collection, encoder, Ledger(redis, "test:ledger")).apply(
        [MovieFetched(source="test", movie=m, occurred_at=now) for m in MOVIES]
    )
    search_app = create_search(
        SearchSettings(
            chroma_url=chroma_url, chroma_collection=collection_name, redis_url=redis_url
        ),
        encoder=encoder,
    )
    async with serve(search_app) as search_url:
        gateway_app = create_gateway(
            GatewaySettings(search_url=search_url, redis_url=redis_url, api_keys="key-one,key-two")
        )
        async with serve(gateway_app) as gateway_url:
            yield {"search": search_url, "gateway": gateway_url}


async def get(url: str, **params: object) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, params=params)  # type: ignore[arg-type]


async def test_a_described_plot_finds_its_movie_first(stack):
    r = await get(
        stack["gateway"] + "/v1/search", q="people on an island hunt a man-eating shark", k=3
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["tmdb_id"] == 578
    assert set(body["results"][0]) >= {"tmdb_id", "title", "year", "genres", "rating", "score"}
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)

    r = await get(stack["gateway"] + "/v1/search", q="girl works in a bathhouse for ghosts", k=1)
    assert r.json()["results"][0]["title"] == "Spirited Away"


async def test_filters_hold(stack):
    gw = stack["gateway"] + "/v1/search"
    r = await get(gw, q="shark", k=10, year_min=1990)
    assert r.status_code == 200
    assert all(h["year"] >= 1990 for h in r.json()["results"])
    assert 578 not in [h["tmdb_id"] for h in r.json()["results"]]

    r = await get(gw, q="space monster", k=10, genres="animation,comedy")
    hits = r.json()["results"]
    assert hits and all({"Animation", "Comedy"} & set(h["genres"]) for h in hits)

    r = await get(gw, q="shark", k=10, min_rating=7)
    assert all(h["rating"] >= 7 for h in r.json()["results"])
    assert 1 not in [h["tmdb_id"] for h in r.json()["results"]]

    r = await get(gw, q="a story", k=10, language="ja")
    assert [h["tmdb_id"] for h in r.json()["results"]] == [129]

    r = await get(gw, q="a story", k=10, year_min=1970, year_max=1980, genres="Horror")
    assert sorted(h["tmdb_id"] for h in r.json()["results"]) == [348, 578]


async def test_movie_by_id_and_similar(stack):
    r = await get(stack["gateway"] + "/v1/movies/578")
    assert r.status_code == 200
    assert r.json()["title"] == "Jaws"
    assert r.json()["directors"] == ["Steven Spielberg"]

    r = await get(stack["gateway"] + "/v1/movies/348/similar", k=3)
    assert r.status_code == 200
    ids = [h["tmdb_id"] for h in r.json()["results"]]
    assert 348 not in ids
    assert len(ids) == 3

    r = await get(stack["gateway"] + "/v1/movies/862/similar", k=5, genres="Animation")
    assert [h["tmdb_id"] for h in r.json()["results"]] == [129]


async def test_clear_errors(stack):
    gw = stack["gateway"]
    r = await get(gw + "/v1/movies/424242")
    assert r.status_code == 404
    assert r.json() == {"detail": "movie 424242 is not in the catalog"}

    r = await get(gw + "/v1/movies/424242/similar")
    assert r.status_code == 404

    r = await get(gw + "/v1/search", q="x", k=0)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "k"]

    r = await get(gw + "/v1/search", q="x", genres="Horor")
    assert r.status_code == 422
    assert "unknown genre" in r.json()["detail"][0]["msg"]

    r = await get(gw + "/v1/search", q="x", year_min=2000, year_max=1990)
    assert r.status_code == 422
    assert "year_min (2000) is after year_max (1990)" in r.text

    r = await get(gw + "/v1/search", q="   ")
    assert r.status_code == 422

    r = await get(gw + "/v1/search", q="x" * (MAX_QUERY_CHARS + 1))
    assert r.status_code == 422

    r = await get(gw + "/v1/movies/abc")
    assert r.status_code == 422


async def test_gateway_says_503_when_search_is_down(redis_url):
    app = create_gateway(GatewaySettings(search_url="http://127.0.0.1:9", redis_url=redis_url))
    async with serve(app) as gw:
        r = await get(gw + "/v1/search", q="shark")
        assert r.status_code == 503
        assert r.json()["detail"].startswith("the search service is unavailable")
        assert r.headers["retry-after"]
        ready = await get(gw + "/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] == "ok"
        assert ready.json()["checks"]["search"] != "ok"


async def test_publishing_catalog_events_needs_a_key_and_validates(stack, redis):
    url = stack["gateway"] + "/v1/catalog/events"
    event = {
        "type": "movie.fetched",
        "source": "partner",
        "movie": {"tmdb_id": 11, "title": "Star Wars", "year": 1977},
    }
    delete = {"type": "movie.deleted", "source": "partner", "tmdb_id": 578}
    async with httpx.AsyncClient() as client:
        r = await client.post(url, json={"events": [event]})
        assert r.status_code == 401
        r = await client.post(url, json={"events": [event]}, headers={"X-API-Key": "nope"})
        assert r.status_code == 403
        bad = {**event, "movie": {"tmdb_id": 11, "title": ""}}
        r = await client.post(url, json={"events": [event, bad]}, headers={"X-API-Key": "key-two"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"][:3] == ["body", "events", 1]
        assert await redis.xlen(CATALOG_STREAM) == 0  # all or nothing

        r = await client.post(
            url, json={"events": [event, delete]}, headers={"X-API-Key": "key-one"}
        )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    entries = await redis.xrange(CATALOG_STREAM)
    assert [e[0].decode() for e in entries] == r.json()["entry_ids"]
    decoded = [decode_event(fields) for _, fields in entries]
    assert decoded[0].movie.title == "Star Wars"  # type: ignore[union-attr]
    assert decoded[1].tmdb_id == 578  # type: ignore[union-attr]


async def test_openapi_documents_the_public_api(stack):
    spec = (await get(stack["gateway"] + "/openapi.json")).json()
    assert {
        "/v1/search",
        "/v1/movies/{tmdb_id}",
        "/v1/movies/{tmdb_id}/similar",
        "/v1/catalog/events",
    } <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
    assert params >= {"q", "k", "genres", "year_min", "year_max", "min_rating", "language"}


def test_the_gateway_never_imports_torch():
    code = (
        "import sys; from marquee_gateway.app import create_app; create_app(); "
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_dead_letter_admin_api(stack, redis):
    ids = [
        (
            await redis.xadd(
                "marquee:catalog:v1:dead",
                {
                    "stream": CATALOG_STREAM,
                    "entry_id": f"5-{i}",
                    "reason": f"bad {i}",
                    "fields": '{"event": "{}"}',
                    "consumer": "c",
                    "failed_at": "t",
                    "deliveries": "3",
                },
            )
        ).decode()
        for i in range(3)
    ]
    base = stack["gateway"] + "/v1/admin/dead-letters"
    key = {"X-API-Key": "key-one"}
    async with httpx.AsyncClient() as client:
        assert (await client.get(base)).status_code == 401
        page = (await client.get(base, headers=key, params={"limit": 2})).json()
        assert page["total"] == 3
        assert [d["reason"] for d in page["items"]] == ["bad 0", "bad 1"]
        assert page["next_after"] == ids[1]
        rest = (await client.get(base, headers=key, params={"after": ids[1]})).json()
        assert [d["id"] for d in rest["items"]] == [ids[2]]
        one = await client.get(f"{base}/{ids[2]}", headers=key)
        assert one.json()["deliveries"] == 3
        assert (await client.get(f"{base}/1-999", headers=key)).status_code == 404
        assert (await client.get(f"{base}/not-an-id", headers=key)).status_code == 422

        r = await client.post(base + "/replay", headers=key, json={"ids": [ids[0], "1-999"]})
        assert r.json()["not_found"] == ["1-999"]
        assert list(r.json()["replayed"]) == [ids[0]]
        assert await redis.xlen(CATALOG_STREAM) == 1
        r = await client.post(base + "/purge", headers=key, json={"ids": [ids[1]]})
        assert r.json() == {"purged": 1}
        assert (await client.get(base, headers=key)).json()["total"] == 1


async def test_the_request_id_travels_with_published_events(stack, redis):
    event = {"type": "movie.deleted", "source": "partner", "tmdb_id": 578}
    async with httpx.AsyncClient() as client:
        r = await client.post(
            stack["gateway"] + "/v1/catalog/events",
            json={"events": [event]},
            headers={"X-API-Key": "key-one", "X-Request-ID": "trace-me-123"},
        )
    assert r.status_code == 202
    assert r.headers["x-request-id"] == "trace-me-123"
    ((_, fields),) = await redis.xrange(CATALOG_STREAM)
    assert fields[b"request_id"] == b"trace-me-123"
