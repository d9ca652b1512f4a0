"""Long "what was that movie" descriptions (issue 13): up to MAX_QUERY_CHARS characters through
the real gateway and the real search service, over a real Chroma index and Redis; one more is
a 422 that says the limit; the limit is a setting of each service, and the gateway's OpenAPI
document and page state the one in force."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.api import MAX_QUERY_CHARS, QUERY_CHARS_CEILING
from marquee_shared.chroma import open_collection
from tests.integration.search.movies import MOVIES
from tests.support.asgi import serve
from tests.support.search import CHANGES, Catalog

pytestmark = pytest.mark.integration

SHINING = 694

PLOT = (
    "I'm trying to remember a horror movie I saw on TV years ago, probably from around 1980. "
    "A man who wants to be a writer takes a job as the winter caretaker of a huge old hotel "
    "high up in the Colorado mountains, and he brings his wife and their little boy along, "
    "because the hotel closes for the whole winter and they will be completely isolated, "
    "snowed in with nobody else around for months. The boy has some kind of psychic gift "
    "and keeps seeing terrible things from the hotel's past: two creepy twin girls standing "
    "at the end of a corridor, blood pouring out of an elevator, a woman in a bathtub in one "
    "of the rooms. The father slowly goes mad from the isolation and the hotel itself, he "
    "types the same sentence over and over on his typewriter for weeks, and in the end he "
    "chases his wife and son with an axe through the empty hallways and out into a hedge "
    "maze covered in snow. I think the actor was famous for playing crazy characters and "
    "the director was very famous too. "
)
RAMBLE = (
    "I honestly can't remember the title, only scenes from it, and the feeling that the "
    "hotel was alive somehow and wanted the family to stay there forever. "
)


def description(chars: int) -> str:
    """A rambling description of exactly ``chars`` characters: the plot, then more words."""
    text = PLOT + RAMBLE * (chars // len(RAMBLE) + 1)
    return text[: chars - 1] + "."  # ends on a character, not a space the API would trim


@pytest.fixture(scope="module")
async def long_collection(chroma_url: str, redis_url: str, encoder: Any) -> str:
    """The search tests' small catalog in a collection of its own, written once here."""
    name = f"long_{uuid.uuid4().hex[:10]}"
    _, collection = await open_collection(httpx.URL(chroma_url), name)  # type: ignore[arg-type]
    redis = Redis.from_url(redis_url)
    try:
        writer = Catalog(
            CatalogIndexer(collection, encoder, Ledger(redis, f"{name}:ledger")), redis
        )
        await writer.put(MOVIES, announce=False)
    finally:
        await redis.aclose()
    return name


@pytest.fixture
def stack(redis_url: str, chroma_url: str, long_collection: str, encoder: Any) -> Any:
    """``async with stack(gateway={...}, search={...}) as (gateway_url, search_url)``: a real
    search service and a real gateway in front of it, with these settings changed."""

    @contextlib.asynccontextmanager
    async def start(
        *, gateway: dict[str, Any] | None = None, search: dict[str, Any] | None = None
    ) -> AsyncIterator[tuple[str, str]]:
        search_settings = SearchSettings(
            chroma_url=chroma_url,
            chroma_collection=long_collection,
            redis_url=redis_url,
            index_changes_stream=CHANGES,
            **(search or {}),
        )
        async with serve(create_search(search_settings, encoder=encoder)) as search_url:
            gateway_settings = GatewaySettings(
                search_url=search_url, redis_url=redis_url, log_format="console", **(gateway or {})
            )
            async with serve(create_gateway(gateway_settings)) as gateway_url:
                yield gateway_url, search_url

    return start


def refusal(r: httpx.Response) -> str:
    """The message of a 422 about ``q``'s length."""
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "q"]
    assert error["type"] == "string_too_long"
    msg: str = error["msg"]
    return msg


async def test_a_2000_character_description_finds_the_film_through_the_gateway(stack):
    q = description(MAX_QUERY_CHARS)
    assert (len(q), MAX_QUERY_CHARS) == (2000, 2000)
    async with stack() as (gateway, _), httpx.AsyncClient(base_url=gateway, timeout=60) as c:
        for mode in ("hybrid", "semantic", "keyword"):
            r = await c.get("/v1/search", params={"q": q, "k": 3, "mode": mode})
            assert r.status_code == 200, (mode, r.text)
            body = r.json()
            assert body["query"] == q
            assert SHINING in [h["tmdb_id"] for h in body["results"]], (mode, body["results"])


async def test_one_character_more_is_a_422_that_states_the_limit(stack):
    too_long = description(MAX_QUERY_CHARS + 1)
    expected = "q is 2,001 characters; the limit is 2,000"
    async with stack() as (gateway, search), httpx.AsyncClient(timeout=60) as c:
        # The gateway refuses it before any hop; search, called directly, says the same.
        for url in (f"{gateway}/v1/search", f"{search}/search"):
            assert refusal(await c.get(url, params={"q": too_long})) == expected, url
        # Counted as sent, before trimming, as the documented maxLength counts.
        padded = " " + description(MAX_QUERY_CHARS)
        r = await c.get(f"{gateway}/v1/search", params={"q": padded, "k": 1})
        assert refusal(r) == expected
        # The length is checked before the other parameters, and the answer does not echo q.
        r = await c.get(f"{gateway}/v1/search", params={"q": too_long, "k": 1000})
        assert refusal(r) == expected
        assert too_long not in r.text


async def test_the_gateway_cap_is_a_setting_its_docs_and_page_follow(stack):
    async with (
        stack(gateway={"max_query_chars": 100}) as (gateway, _),
        httpx.AsyncClient(base_url=gateway, timeout=60) as c,
    ):
        assert (await c.get("/v1/search", params={"q": description(100)})).status_code == 200
        r = await c.get("/v1/search", params={"q": description(101)})
        assert refusal(r) == "q is 101 characters; the limit is 100"

        spec = (await c.get("/openapi.json")).json()
        assert query_param(spec, "/v1/search")["schema"]["maxLength"] == 100
        assert "At most 100 characters." in query_param(spec, "/v1/search")["description"]
        page = (await c.get("/")).text
        assert 'maxlength="100"' in page
        assert f'maxlength="{MAX_QUERY_CHARS}"' not in page


async def test_the_openapi_document_states_the_default_cap(stack):
    async with stack() as (gateway, _), httpx.AsyncClient(base_url=gateway, timeout=60) as c:
        spec = (await c.get("/openapi.json")).json()
        page = (await c.get("/")).text
    q = query_param(spec, "/v1/search")
    assert q["schema"]["maxLength"] == MAX_QUERY_CHARS == 2000
    assert q["schema"]["minLength"] == 1
    assert "At most 2,000 characters." in q["description"]
    # Similar-by-text keeps the model's own bound, the same default.
    assert query_param(spec, "/v1/similar")["schema"]["maxLength"] == MAX_QUERY_CHARS
    assert f'maxlength="{MAX_QUERY_CHARS}"' in page


async def test_a_gateway_cap_above_search_s_gets_search_s_422_relayed(stack):
    # The gateway lets 2,500 characters through; search (default cap) refuses, and says why.
    async with (
        stack(gateway={"max_query_chars": 3000}) as (gateway, _),
        httpx.AsyncClient(base_url=gateway, timeout=60) as c,
    ):
        r = await c.get("/v1/search", params={"q": description(2500)})
        assert refusal(r) == "q is 2,500 characters; the limit is 2,000"


async def test_the_search_cap_is_a_setting(stack):
    async with (
        stack(gateway={"max_query_chars": 3000}, search={"max_query_chars": 3000}) as (gw, _),
        httpx.AsyncClient(timeout=60) as c,
    ):
        r = await c.get(f"{gw}/v1/search", params={"q": description(2500), "k": 3})
        assert r.status_code == 200, r.text
        assert SHINING in [h["tmdb_id"] for h in r.json()["results"]]
    async with stack(search={"max_query_chars": 100}) as (_, search), httpx.AsyncClient() as c:
        r = await c.get(f"{search}/search", params={"q": description(101)})
        assert refusal(r) == "q is 101 characters; the limit is 100"


def test_the_caps_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().max_query_chars == SearchSettings().max_query_chars == 2000
    monkeypatch.setenv("MARQUEE_GATEWAY_MAX_QUERY_CHARS", "3000")
    monkeypatch.setenv("MARQUEE_SEARCH_MAX_QUERY_CHARS", "2500")
    assert GatewaySettings().max_query_chars == 3000
    assert SearchSettings().max_query_chars == 2500
    # No further than the models' own ceiling; and never 0.
    for value in (str(QUERY_CHARS_CEILING + 1), "0"):
        monkeypatch.setenv("MARQUEE_GATEWAY_MAX_QUERY_CHARS", value)
        monkeypatch.setenv("MARQUEE_SEARCH_MAX_QUERY_CHARS", value)
        with pytest.raises(ValidationError):
            GatewaySettings()
        with pytest.raises(ValidationError):
            SearchSettings()


def query_param(spec: dict[str, Any], path: str) -> dict[str, Any]:
    params = spec["paths"][path]["get"]["parameters"]
    (q,) = [p for p in params if (p["in"], p["name"]) == ("query", "q")]
    return q  # type: ignore[no-any-return]
