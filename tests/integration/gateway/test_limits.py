"""The gateway's abuse limits, against a real gateway, a real search service and a real Redis:
per-client rate limits (shared by replicas, failing open without Redis), body and query-string
size, event size, and backpressure on the catalog stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from marquee_gateway.limits import MAX_QUERY_STRING_BYTES, max_query_string_bytes
from marquee_gateway.ratelimit import RateLimiter
from marquee_shared.api import MAX_QUERY_CHARS, TMDB_GENRES
from marquee_shared.events import CATALOG_STREAM, MAX_EVENT_BYTES
from tests.support.gateway import API_KEY, OTHER_KEY

pytestmark = pytest.mark.integration

EVENTS = "/v1/catalog/events"
DELETE = {"type": "movie.deleted", "source": "test", "tmdb_id": 578}
EVERY_FILTER = {
    "genres": list(TMDB_GENRES),
    "year_min": 1870,
    "year_max": 2100,
    "min_rating": 0,
    "min_votes": 0,
    "language": "en",
    "mode": "semantic",
}
"""Each filter present, matching every test movie, written as a client would."""


def assert_rate_limited(r: httpx.Response, limit: int) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/json"
    assert f"at most {limit} " in r.json()["detail"]
    retry_after = int(r.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


# --- rate limits ---------------------------------------------------------------------------


async def test_a_client_past_its_limit_gets_429_with_retry_after(gateway, redis):
    async with gateway(rate_limit_per_minute=3) as gw, httpx.AsyncClient(base_url=gw) as client:
        for _ in range(3):
            assert (await client.get("/v1/movies/578")).status_code == 200
        r = await client.get("/v1/movies/578")
        retry_after = assert_rate_limited(r, 3)
        # 3 per minute: one request's share is 20 s, and the bucket just filled.
        assert 15 <= retry_after <= 20
        assert r.headers["x-request-id"]  # refused requests are still traced and logged

        # A random X-API-Key is not a way out: only a configured key names a client.
        r = await client.get("/v1/movies/578", headers={"X-API-Key": "made-up"})
        assert r.status_code == 429
        # A valid key is its own client, with its own budget; so is another valid key.
        for key in (API_KEY, OTHER_KEY):
            r = await client.get("/v1/movies/578", headers={"X-API-Key": key})
            assert r.status_code == 200, r.text

        # Probes and scrapers are never limited.
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


async def test_the_limit_recovers_after_retry_after(gateway, redis):
    # 120 per minute: a burst of 120, then one request every 0.5 s. An unknown path is the
    # cheapest request that is still counted, so the burst is sent faster than it refills.
    async with gateway(rate_limit_per_minute=120) as gw, httpx.AsyncClient(base_url=gw) as client:
        started = time.monotonic()
        allowed = 0
        while (r := await client.get("/v1/nothing-here")).status_code == 404:
            allowed += 1
            assert allowed <= 1000, "never limited"
        elapsed = time.monotonic() - started
        assert 120 <= allowed <= 120 + elapsed / 0.5 + 1  # the burst, plus what refilled
        retry_after = assert_rate_limited(r, 120)
        assert retry_after == 1  # the next slot is at most 0.5 s away
        await asyncio.sleep(retry_after)
        assert (await client.get("/v1/nothing-here")).status_code == 404


async def test_writes_have_their_own_stricter_limit(gateway, redis):
    async with (
        gateway(rate_limit_per_minute=100, write_rate_limit_per_minute=2) as gw,
        httpx.AsyncClient(base_url=gw, headers={"X-API-Key": API_KEY}) as client,
    ):
        for _ in range(2):
            r = await client.post(EVENTS, json={"events": [DELETE]})
            assert r.status_code == 202, r.text
        assert_rate_limited(await client.post(EVENTS, json={"events": [DELETE]}), 2)
        # Reads are counted apart: searching still works.
        assert (await client.get("/v1/search", params={"q": "shark"})).status_code == 200
    assert await redis.xlen(CATALOG_STREAM) == 2


async def test_replicas_share_one_limit_through_redis(gateway, redis):
    async with (
        gateway(rate_limit_per_minute=4) as one,
        gateway(rate_limit_per_minute=4) as two,
        httpx.AsyncClient() as client,
    ):
        statuses = [
            (await client.get(f"{url}/v1/movies/129")).status_code for url in [one, two] * 2
        ]
        assert statuses == [200] * 4
        assert (await client.get(f"{one}/v1/movies/129")).status_code == 429
        assert (await client.get(f"{two}/v1/movies/129")).status_code == 429


async def test_zero_disables_the_limit(gateway, redis):
    async with (
        gateway(rate_limit_per_minute=0) as gw,
        httpx.AsyncClient(base_url=gw) as client,
    ):
        statuses = {(await client.get("/openapi.json")).status_code for _ in range(30)}
        assert statuses == {200}
    assert await redis.keys("marquee:ratelimit:*") == []


def limiter_errors() -> float:
    return REGISTRY.get_sample_value("marquee_gateway_rate_limiter_errors_total") or 0.0


@contextlib.asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_without_redis_the_limiter_fails_open_and_reads_keep_working(gateway):
    refused = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    async with silent_redis() as hung:
        for redis_url in (refused, hung):
            before = limiter_errors()
            async with (
                gateway(redis_url=redis_url, rate_limit_per_minute=1) as gw,
                httpx.AsyncClient(base_url=gw, timeout=10) as client,
            ):
                for _ in range(3):
                    r = await client.get("/v1/search", params={"q": "a shark", "k": 1})
                    assert r.status_code == 200, (redis_url, r.text)
                    assert r.json()["results"][0]["tmdb_id"] == 578
                if redis_url == refused:  # (a hung Redis takes redis-py's 5 s timeout)
                    # Writes cannot work without Redis, and say so.
                    r = await client.post(
                        EVENTS, json={"events": [DELETE]}, headers={"X-API-Key": API_KEY}
                    )
                    assert r.status_code == 503
            assert limiter_errors() - before >= 3, redis_url


async def test_the_limiter_is_atomic_under_concurrency(redis):
    """50 concurrent checks against a limit of 20 from two "replicas": exactly 20 pass."""
    replicas = [RateLimiter(redis), RateLimiter(redis)]
    decisions = await asyncio.gather(
        *(replicas[i % 2].hit("read:ip:198.51.100.1", 20) for i in range(50))
    )
    assert sum(d.allowed for d in decisions) == 20
    refused = [d for d in decisions if not d.allowed]
    assert all(0 < d.retry_after_s <= 3.0 for d in refused)  # 60 s / 20 = 3 s per request
    assert min(d.remaining for d in decisions if d.allowed) == 0
    ttl = await redis.pttl("marquee:ratelimit:read:ip:198.51.100.1")
    assert 0 < ttl <= 62_000  # idle clients cost nothing after a minute


# --- sizes ---------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_with_413(gateway, redis):
    async with (
        gateway(max_body_bytes=2048) as gw,
        httpx.AsyncClient(base_url=gw, headers={"X-API-Key": API_KEY}) as client,
    ):
        small = {"events": [DELETE]}
        assert (await client.post(EVENTS, json=small)).status_code == 202

        big = json.dumps({"events": [DELETE] * 60}).encode()
        assert len(big) > 2048
        r = await client.post(EVENTS, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json() == {"detail": "request body is larger than the 2048-byte limit"}

        # Without Content-Length (chunked), counted as it arrives and refused the same way.
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 512):
                yield big[i : i + 512]

        r = await client.post(
            EVENTS, content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        assert "2048-byte limit" in r.json()["detail"]

        # Even unauthenticated: the body is refused before anyone parses it.
        r = await client.post(
            EVENTS, content=big, headers={"content-type": "application/json", "X-API-Key": ""}
        )
        assert r.status_code == 413
    assert await redis.xlen(CATALOG_STREAM) == 1


async def test_an_overlong_query_string_is_refused_with_414(gateway):
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        junk = ["Horror"] * (MAX_QUERY_STRING_BYTES // len("genres=Horror&") + 1)
        r = await client.get("/v1/search", params={"q": "shark", "genres": junk})
        assert r.status_code == 414
        assert r.json() == {"detail": f"query string is longer than {MAX_QUERY_STRING_BYTES} bytes"}
        # The longest valid query, in the widest characters, with every filter, still fits,
        # through the gateway and the hop to search (12 bytes a character once encoded).
        widest = "\U0001f988" * MAX_QUERY_CHARS
        r = await client.get("/v1/search", params={"q": widest, "k": 100, **EVERY_FILTER})
        assert r.status_code == 200, r.text
        assert r.json()["query"] == widest


async def test_the_query_string_limit_follows_the_query_cap(gateway):
    async with gateway(max_query_chars=100) as gw, httpx.AsyncClient(base_url=gw) as client:
        limit = max_query_string_bytes(100)
        assert limit < MAX_QUERY_STRING_BYTES
        r = await client.get("/v1/search", params={"q": "\U0001f988" * 100, **EVERY_FILTER})
        assert r.status_code == 200, r.text
        r = await client.get("/v1/search", params={"q": "\U0001f988" * (limit // 12 + 1)})
        assert r.status_code == 414
        assert r.json() == {"detail": f"query string is longer than {limit} bytes"}


def oversized_event() -> dict[str, object]:
    """Valid by every field limit, yet over MAX_EVENT_BYTES once encoded (4-byte characters)."""
    wide = "\U0001f3ac"
    movie = {
        "tmdb_id": 11,
        "title": wide * 300,
        "overview": wide * 5000,
        "genres": [wide * 200] * 20,
        "directors": [wide * 200] * 20,
        "cast": [wide * 200] * 20,
        "keywords": [wide * 100] * 50,
    }
    return {"type": "movie.fetched", "source": "test", "movie": movie}


async def test_an_event_over_the_size_limit_is_refused_by_index(gateway, redis):
    event = oversized_event()
    assert len(json.dumps(event, ensure_ascii=False).encode()) > MAX_EVENT_BYTES
    async with (
        gateway() as gw,
        httpx.AsyncClient(base_url=gw, headers={"X-API-Key": API_KEY}) as client,
    ):
        r = await client.post(EVENTS, json={"events": [DELETE, event]})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "events", 1]
    assert f"above the {MAX_EVENT_BYTES}-byte limit" in error["msg"]
    assert await redis.xlen(CATALOG_STREAM) == 0  # all or nothing


# --- backpressure --------------------------------------------------------------------------


async def test_a_full_backlog_answers_429_until_the_embedders_catch_up(gateway, redis):
    for i in range(3):
        await redis.xadd(CATALOG_STREAM, {"event": json.dumps({**DELETE, "tmdb_id": i + 1})})
    async with (
        gateway(max_backlog=3) as gw,
        httpx.AsyncClient(base_url=gw, headers={"X-API-Key": API_KEY}) as client,
    ):
        r = await client.post(EVENTS, json={"events": [DELETE]})
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "backlog is full (3 events waiting, limit 3)" in r.json()["detail"]
        assert await redis.xlen(CATALOG_STREAM) == 3  # nothing published

        # An embedder group reads and acknowledges everything: the backlog is empty again.
        await redis.xgroup_create(CATALOG_STREAM, "embedders", id="0")
        entries = await redis.xreadgroup("embedders", "test", {CATALOG_STREAM: ">"}, count=10)
        await redis.xack(CATALOG_STREAM, "embedders", *[e[0] for e in entries[0][1]])

        r = await client.post(EVENTS, json={"events": [DELETE]})
        assert r.status_code == 202, r.text
    assert await redis.xlen(CATALOG_STREAM) == 4


# --- documentation -------------------------------------------------------------------------


async def test_the_openapi_schema_documents_the_limits(gateway):
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        spec = (await client.get("/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]
    assert operations
    for path, method, op in operations:
        assert {"414", "429"} <= set(op["responses"]), (path, method)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        if "requestBody" in op:
            assert "413" in op["responses"], (path, method)
    # The search query's cap, a setting, is the documented maxLength (the model's is higher).
    (q,) = [p for p in spec["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == "q"]
    assert q["schema"]["maxLength"] == MAX_QUERY_CHARS
