"""POST /v1/explanations and /v1/explanations/search-hit through a real gateway and a real
explainer (on real Redis and Chroma)."""

from __future__ import annotations

import httpx
import pytest

from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from tests.support.asgi import serve
from tests.support.explainer import post

pytestmark = pytest.mark.integration

JAWS, JAWS_2, ALIEN, ZODIAC, MANHUNTER = 578, 579, 348, 1949, 11454


def gateway(redis_url: str, explainer_url: str) -> object:
    return create_gateway(
        GatewaySettings(
            search_url="http://127.0.0.1:9", explainer_url=explainer_url, redis_url=redis_url
        )
    )


async def test_explanations_through_the_gateway(explainer, fake, redis_url):
    async with explainer() as explainer_url, serve(gateway(redis_url, explainer_url)) as gw:
        r = await post(gw + "/v1/explanations", {"target_id": JAWS_2, "liked": [JAWS, ALIEN]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["generator"] == "claude-haiku-4-5"
        assert set(body["cited_ids"]) <= {JAWS_2, JAWS, ALIEN}
        assert body["text"]
        assert r.headers["x-request-id"]

        r = await post(
            gw + "/v1/explanations/search-hit",
            {"query": "serial killer investigation like zodiac, 80s", "tmdb_id": MANHUNTER},
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["cited_ids"]) <= {MANHUNTER, ZODIAC}


async def test_errors_are_clear(explainer, redis_url):
    async with (
        explainer(anthropic_api_key=None) as explainer_url,
        serve(gateway(redis_url, explainer_url)) as gw,
    ):
        r = await post(gw + "/v1/explanations", {"target_id": 424242, "liked": [JAWS]})
        assert r.status_code == 404
        assert r.json() == {"detail": "movie 424242 is not in the catalog"}

        r = await post(gw + "/v1/explanations/search-hit", {"query": "x", "tmdb_id": 424242})
        assert r.status_code == 404

        r = await post(gw + "/v1/explanations", {"target_id": JAWS})
        assert r.status_code == 422
        assert "give the taste" in r.text

        r = await post(gw + "/v1/explanations", {"target_id": JAWS, "liked": list(range(1, 60))})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "liked"]

        r = await post(
            gw + "/v1/explanations",
            {"target_id": JAWS, "ratings": [{"tmdb_id": ALIEN, "rating": 9}]},
        )
        assert r.status_code == 422

        r = await post(gw + "/v1/explanations/search-hit", {"query": "  ", "tmdb_id": JAWS})
        assert r.status_code == 422


async def test_503_when_the_explainer_is_down(redis_url):
    async with serve(gateway(redis_url, "http://127.0.0.1:9")) as gw:
        r = await post(gw + "/v1/explanations", {"target_id": JAWS_2, "liked": [JAWS]})
    assert r.status_code == 503
    assert r.json()["detail"].startswith("the explainer service is unavailable")
    assert r.headers["retry-after"]


async def test_openapi_documents_explanations_with_examples(redis_url):
    async with (
        serve(gateway(redis_url, "http://127.0.0.1:9")) as gw,
        httpx.AsyncClient() as client,
    ):
        spec = (await client.get(gw + "/openapi.json")).json()
    for path in ("/v1/explanations", "/v1/explanations/search-hit"):
        operation = spec["paths"][path]["post"]
        assert {"200", "404", "422", "503"} <= set(operation["responses"])
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert examples
    response = spec["components"]["schemas"]["Explanation"]
    assert {"text", "confidence", "cited_ids", "facts", "generator", "cached"} <= set(
        response["properties"]
    )
