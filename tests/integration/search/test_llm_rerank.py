"""Claude re-ranking through the real search service: Chroma written by the real indexer, the
keyword mirror fed by the changelog on a real Redis (which also holds the re-ranking cache), and
the real Anthropic SDK talking to the fake Messages API (tests/fakes/anthropic.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from marquee_search.app import create_app as create_search
from marquee_search.llm_rerank import CACHE_PREFIX
from marquee_search.settings import SearchSettings
from tests.fakes.anthropic import (
    FakeAnthropic,
    candidate_ids,
    ranking_answer,
    rate_limited,
    reversed_ranking,
    tool_call,
)
from tests.support.asgi import serve
from tests.support.search import CHANGES, get

pytestmark = pytest.mark.integration

DEADLINE_S = 1.5
CACHE_TTL_S = 600
K = 5
HEDGED = (
    "I think it was an old movie, maybe from the seventies, about a huge shark that keeps "
    "killing swimmers near a beach town, and the police chief goes out on a small boat with a "
    "scientist and a grumpy fisherman to hunt it down. Not sure about the title at all."
)
JAWS = 578
KOYAANISQATSI = 11314


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> FakeAnthropic:
    """The fake API, answering every re-ranking with the candidates reversed unless scripted."""
    fake_server.reset()
    fake_server.responder = reversed_ranking
    return fake_server


Replica = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def replica(
    redis_url: str, chroma_url: str, collection_name: str, encoder: Any, catalog: Any, fake: Any
) -> Replica:
    """``async with replica(**settings) as url``: a search replica over the test catalog that
    re-ranks with Claude through the fake API."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        values: dict[str, Any] = {
            "chroma_url": chroma_url,
            "chroma_collection": collection_name,
            "redis_url": redis_url,
            "index_changes_stream": CHANGES,
            "anthropic_api_key": fake.api_key,
            "anthropic_base_url": fake.url,
            "llm_rerank_deadline_s": DEADLINE_S,
            "llm_rerank_max_retries": 0,
            "llm_rerank_cache_ttl_s": CACHE_TTL_S,
            "log_format": "console",
            # Claude's step is under test: the candidates' order is the engine's, whatever
            # made it (read back from the request the fake received), so the learned ranker's
            # model file is left out of these tests.
            "ranker_model": None,
        }
        values.update(overrides)
        app = create_search(SearchSettings(**values), encoder=encoder)
        async with serve(app) as url:
            yield url

    return start


async def search(url: str, q: str, **params: Any) -> tuple[list[int], str, float]:
    """Result ids, the ranker that ordered them, and the seconds the request took."""
    started = time.monotonic()
    r = await get(url + "/search", q=q, k=K, **params)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    body = r.json()
    return [h["tmdb_id"] for h in body["results"]], body["ranker"], elapsed


async def rerank_metrics(url: str) -> dict[str, float]:
    """The re-ranking series /metrics exposes: {"calls:ok": n, "fallbacks:timeout": n, ...}."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url + "/metrics")).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix("marquee_search_llm_rerank_")
            if name == sample.name:
                continue
            if "le" in sample.labels:
                continue  # histogram buckets
            label = next(iter(sample.labels.values()), "")
            found[f"{name.removesuffix('_total')}:{label}"] = sample.value
    return found


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The series that changed, and by how much."""
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


async def test_a_long_hedged_request_gets_claudes_order_then_the_cache(
    replica: Replica, fake: FakeAnthropic, redis: Any
):
    async with replica() as url:
        before = await rerank_metrics(url)
        found, ranker, _ = await search(url, HEDGED)
        assert fake.calls == 1
        body = fake.requests[0].body
        sent = candidate_ids(body)
        assert len(sent) == len(set(sent)) >= 20  # the top 25 of the catalog's ~30
        assert sent[0] == JAWS  # the engine found it; Claude's order puts it last
        assert found == sent[::-1][:K]
        assert ranker.endswith("+claude:claude-haiku-4-5")
        assert body["tool_choice"] == {"type": "tool", "name": "rank_candidates"}

        # The same request (typed differently) is answered from Redis, without a call.
        again, ranker_again, _ = await search(url, "  " + HEDGED.upper())
        assert again == found
        assert ranker_again == ranker
        assert fake.calls == 1
        keys = [k async for k in redis.scan_iter(match=f"{CACHE_PREFIX}:*")]
        assert len(keys) == 1
        assert 0 < await redis.ttl(keys[0]) <= CACHE_TTL_S

        change = moved(before, await rerank_metrics(url))
        assert change["calls:ok"] == 1
        assert change["calls:cached"] == 1
        assert change["seconds_count:"] == 1
        assert change["tokens:input"] > 0
        assert not any(k.startswith("fallbacks") for k in change)


async def test_short_title_queries_and_other_modes_never_call_claude(
    replica: Replica, fake: FakeAnthropic
):
    async with replica() as url:
        for q in ("jaws", "the shinign", "a shark attacks swimmers at a beach"):
            found, ranker, _ = await search(url, q)
            assert found
            assert "claude" not in ranker
        for mode in ("semantic", "keyword"):  # hybrid only
            _, ranker, _ = await search(url, HEDGED, mode=mode)
            assert "claude" not in ranker
        assert fake.calls == 0


async def test_without_a_key_nothing_changes(replica: Replica, fake: FakeAnthropic):
    async with replica(anthropic_api_key=None) as url:
        _, ranker, _ = await search(url, HEDGED)
    async with replica(llm_rerank=False) as url:
        _, ranker_off, _ = await search(url, HEDGED)
    assert "claude" not in ranker
    assert ranker_off == ranker
    assert fake.calls == 0


async def test_invented_ids_never_appear(replica: Replica, fake: FakeAnthropic):
    invented = [999999, 424242, 2**31 - 1]
    async with replica() as url:
        # Nothing but invented ids: no order at all, so the engine's stands (and nothing is
        # cached, so the next request asks again).
        fake.responder = lambda _: ranking_answer(invented)
        found, ranker, _ = await search(url, HEDGED)
        assert found == candidate_ids(fake.requests[-1].body)[:K]
        assert "claude" not in ranker

        def some_invented(body: dict[str, Any]) -> Any:
            sent = candidate_ids(body)
            return ranking_answer([invented[0], sent[3], sent[3], invented[1], sent[1]])

        fake.responder = some_invented
        found, ranker, _ = await search(url, HEDGED)
        sent = candidate_ids(fake.requests[-1].body)
        assert found == [sent[3], sent[1], sent[0], sent[2], sent[4]]
        assert not set(found) & set(invented)
        assert "claude" in ranker
        assert fake.calls == 2


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (tool_call("rank_candidates", '{"ranking": [578, 129'), "malformed"),
        (rate_limited(retry_after=1), "rate_limited"),
        (ranking_answer([1091, 694], delay_s=DEADLINE_S + 2), "timeout"),
    ],
    ids=["broken-json", "429", "slow"],
)
async def test_failures_fall_back_to_the_learned_ranking_within_the_deadline(
    replica: Replica, fake: FakeAnthropic, reply: Any, outcome: str
):
    async with replica() as url:
        before = await rerank_metrics(url)
        fake.script(reply)
        found, ranker, elapsed = await search(url, HEDGED)
        assert fake.calls == 1
        assert found == candidate_ids(fake.requests[0].body)[:K]  # the engine's order
        assert "claude" not in ranker
        assert elapsed < DEADLINE_S + 1.0
        change = moved(before, await rerank_metrics(url))
        assert change[f"calls:{outcome}"] == 1
        assert change[f"fallbacks:{outcome}"] == 1
        assert "calls:ok" not in change
        # A failure is not cached: the next identical request asks again (and succeeds).
        found_again, ranker_again, _ = await search(url, HEDGED)
        assert fake.calls == 2
        assert "claude" in ranker_again
        assert found_again != found


async def test_name_then_verify_adds_catalog_movies_only(replica: Replica, fake: FakeAnthropic):
    async with replica(llm_rerank_titles=True, llm_rerank_candidates=4) as url:
        fake.responder = lambda body: ranking_answer(
            candidate_ids(body)[:1],
            titles=["Koyaanisqatsi (1982)", "Jurassic Park (1993)", "Jaws (2019)"],
        )
        found, ranker, _ = await search(url, HEDGED)
        sent = candidate_ids(fake.requests[0].body)
        assert KOYAANISQATSI not in sent
        # Claude's one ranked candidate, the named movie the catalog holds, then the rest.
        assert found[:3] == [sent[0], KOYAANISQATSI, sent[1]]
        assert "claude" in ranker
        # Filters hold for named movies too: a documentary is not a horror film.
        found, _, _ = await search(url, HEDGED, genres="Horror")
        assert KOYAANISQATSI not in found
