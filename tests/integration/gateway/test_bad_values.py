"""Values that JSON or the contract does not allow, sent to a real gateway (in front of a real
search service, over real Redis): each is a 422 that says what is wrong, never a 500.

Before (issue 15, item 9): ``NaN``, ``Infinity`` or a lone surrogate got a plain-text 500 and
a reset connection (the 422 handler failed echoing them back), a ``release_date`` of year 1 was
accepted (202) and dead-lettered later, and an ``occurred_at`` in 2099 was accepted and won over
every later change of that movie.
"""

from __future__ import annotations

import json

import httpx
import pytest

from marquee_shared.events import CATALOG_STREAM
from tests.support.gateway import API_KEY

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json", "x-api-key": API_KEY}


def movie_event(**movie: object) -> dict[str, object]:
    return {
        "type": "movie.fetched",
        "source": "test",
        "occurred_at": "2024-05-01T12:00:00Z",
        "movie": {"tmdb_id": 578, "title": "Jaws", **movie},
    }


# A literal where JSON has a number or a string, on each route of the issue: the body is
# written by hand, since json.dumps cannot write most of these.
BAD_BODIES = [
    ("/v1/recommendations", '{"liked": [578], "mmr_lambda": NaN}', "NaN is not a JSON number"),
    ("/v1/recommendations", '{"liked": [578], "mmr_lambda": 1e999}', "1e999 is too large"),
    (
        "/v1/explanations",
        '{"target_id": 578, "ratings": [{"tmdb_id": 348, "rating": Infinity}]}',
        "Infinity is not a JSON number",
    ),
    (
        "/v1/explanations/search-hit",
        '{"query": "a shark \\ud800", "tmdb_id": 578}',
        "\\ud800 in query is a lone surrogate",
    ),
    (
        "/v1/catalog/events",
        (
            '{"events": [{"type": "movie.fetched", "source": "t", '
            '"movie": {"tmdb_id": 578, "title": "Jaws", "popularity": -Infinity}}]}'
        ),
        "-Infinity is not a JSON number",
    ),
    (
        "/v1/catalog/events",
        '{"events": [{"type": "movie.deleted", "source": "\\udc00", "tmdb_id": 578}]}',
        "\\udc00 in events[0].source is a lone surrogate",
    ),
]


@pytest.mark.parametrize(("path", "body", "says"), BAD_BODIES)
async def test_what_json_does_not_allow_is_refused_saying_what(gateway, redis, path, body, says):
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        r = await client.post(path, content=body.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/json"
    (error,) = r.json()["detail"]
    assert error["type"] == "json_invalid"
    assert says in error["msg"]
    assert await redis.xlen(CATALOG_STREAM) == 0


async def test_a_422_can_echo_whatever_was_sent(gateway):
    # Not JSON (text/plain) and not UTF-8: FastAPI validates the raw bytes; echoing them back
    # failed in its own handler (a 500).
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        r = await client.post(
            "/v1/recommendations", content=b"\xff\xfe", headers={"content-type": "text/plain"}
        )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["input"] == "\ufffd\ufffd"


@pytest.mark.parametrize(
    ("event", "where", "says"),
    [
        (
            movie_event(release_date="0001-01-01"),
            ["body", "events", 0, "movie.fetched", "movie", "release_date"],
            "the year of 0001-01-01 is outside 1870-2100",
        ),
        (
            {**movie_event(), "occurred_at": "2099-01-01T00:00:00Z"},
            ["body", "events", 0, "movie.fetched", "occurred_at"],
            "is in the future",
        ),
    ],
)
async def test_events_the_contract_refuses_are_a_422_naming_the_field(
    gateway, redis, event, where, says
):
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        r = await client.post(
            "/v1/catalog/events", content=json.dumps({"events": [event]}), headers=JSON
        )
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == where
    assert says in error["msg"]
    assert await redis.xlen(CATALOG_STREAM) == 0


async def test_the_same_events_done_right_are_accepted(gateway, redis):
    events = [
        movie_event(release_date="1975-06-20"),
        {"type": "movie.deleted", "source": "test", "tmdb_id": 348},
    ]
    async with gateway() as gw, httpx.AsyncClient(base_url=gw) as client:
        r = await client.post(
            "/v1/catalog/events", content=json.dumps({"events": events}), headers=JSON
        )
    assert r.status_code == 202, r.text
    assert await redis.xlen(CATALOG_STREAM) == 2
