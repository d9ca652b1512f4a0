"""The explainer against real Redis and Chroma (movies written by the embedder's indexer), with
the real Anthropic SDK talking to the fake Messages API server."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from marquee_explainer.app import create_app
from marquee_explainer.settings import ExplainerSettings
from tests.fakes.anthropic import (
    FakeAnthropic,
    grounded_answer,
    overloaded,
    rate_limited,
    server_error,
    slow,
    text_answer,
    tool_answer,
)
from tests.support.asgi import serve
from tests.support.explainer import BY_ID, index_movies, post

pytestmark = pytest.mark.integration

JAWS, JAWS_2, ALIEN, THING, ZODIAC, SE7EN, MANHUNTER = 578, 579, 348, 1091, 1949, 807, 11454
CLOSE_ENCOUNTERS, ET, TOY_STORY, DARK_KNIGHT_RISES, INJECTED = 840, 601, 862, 49026, 990001

TASTE = {"target_id": JAWS_2, "liked": [JAWS, ALIEN, CLOSE_ENCOUNTERS], "disliked": [TOY_STORY]}
CONTEXT = {JAWS_2, JAWS, ALIEN, CLOSE_ENCOUNTERS}


def assert_grounded(body: dict, context: set[int]) -> None:
    """What every answer must satisfy, whoever wrote it."""
    assert set(body["cited_ids"]) <= context, body
    assert "[[" not in body["text"], body["text"]
    for title in ("The Dark Knight Rises", "Toy Story", "Heat", "Zodiac"):
        if not any(BY_ID[i].title == title for i in context):
            assert title not in body["text"], body["text"]
    for year in re.findall(r"\((\d{4})\)", body["text"]):
        assert int(year) in {BY_ID[i].year for i in context}, body["text"]
    assert body["confidence"] in {"high", "medium", "low"}


def tool_results(fake: FakeAnthropic, n: int) -> list[dict]:
    """The tool_result blocks of request ``n`` (the retry carries the rejection)."""
    return [
        block
        for message in fake.requests[n].body["messages"]
        if message["role"] == "user"
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


async def test_claude_writes_a_grounded_explanation(explainer, fake):
    async with explainer() as url:
        r = await post(url + "/explanations", TASTE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["generator"] == "claude-haiku-4-5"
    assert body["fallback_reason"] is None
    assert body["cached"] is False
    # The nearest liked movie is the other shark film, and the shared star is a fact.
    assert body["nearest_liked"][0]["tmdb_id"] == JAWS
    assert "Jaws 2 (1978)" in body["text"]
    assert "Jaws (1975)" in body["text"]
    assert {"kind": "cast", "value": "Roy Scheider", "movie_ids": [JAWS]} in body["facts"]
    assert body["confidence"] == "high"
    assert_grounded(body, CONTEXT)

    (request,) = fake.requests
    sent = request.body
    assert fake.api_key in (request.headers.get("x-api-key"), request.headers["authorization"][7:])
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["tool_choice"] == {"type": "tool", "name": "submit_explanation"}
    assert sent["tools"][0]["input_schema"]["required"] == ["text", "cited_ids", "fact_ids"]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    prompt = json.dumps(sent["messages"])
    # Only the context reaches the prompt: the disliked movie and the rest of the catalog don't.
    for outsider in ("Toy Story", "Zodiac", "The Thing", "Dark Knight"):
        assert outsider not in prompt


async def test_rate_limit_then_success_honours_retry_after(explainer, fake):
    fake.script(rate_limited(retry_after=1))
    async with explainer(max_retries=2) as url:
        r = await post(url + "/explanations", TASTE)
    body = r.json()
    assert body["generator"] == "claude-haiku-4-5", body
    first, second = fake.requests
    assert first.status == 429
    assert second.status == 200
    # The SDK waited as told (its own backoff would be about 0.5 s).
    assert second.at - first.at >= 0.95


@pytest.mark.parametrize("failures", [[server_error(), server_error()], [overloaded()] * 2])
async def test_repeated_server_errors_fall_back(explainer, fake, failures):
    fake.script(*failures)
    async with explainer(max_retries=1) as url:
        r = await post(url + "/explanations", TASTE)
    body = r.json()
    assert r.status_code == 200
    assert body["generator"] == "deterministic"
    assert body["fallback_reason"] == "llm_error"
    assert fake.calls == 2  # the first try and the SDK's one retry
    assert "Jaws 2 (1978)" in body["text"]
    assert body["facts"]
    assert_grounded(body, CONTEXT)


async def test_a_slow_server_times_out_and_falls_back(explainer, fake):
    fake.responder = lambda request: slow(grounded_answer(request), 5)
    async with explainer(timeout_s=0.5, max_retries=0) as url:
        started = time.monotonic()
        r = await post(url + "/explanations", TASTE)
        took = time.monotonic() - started
    body = r.json()
    assert body["generator"] == "deterministic"
    assert body["fallback_reason"] == "llm_timeout"
    assert took < 3
    assert_grounded(body, CONTEXT)


async def test_the_deadline_bounds_retries_too(explainer, fake):
    fake.responder = lambda request: rate_limited(retry_after=30)
    async with explainer(max_retries=5, deadline_s=1.0) as url:
        started = time.monotonic()
        r = await post(url + "/explanations", TASTE)
    assert time.monotonic() - started < 4
    assert r.json()["fallback_reason"] == "llm_timeout"


BAD_ANSWERS = {
    "an id outside the context": tool_answer(
        f"Because you liked [[{JAWS}]], you will like [[{DARK_KNIGHT_RISES}]] and [[{JAWS_2}]].",
        [JAWS, DARK_KNIGHT_RISES, JAWS_2],
        ["F1"],
    ),
    "a cited id outside the context": tool_answer(
        f"[[{JAWS_2}]] stars Roy Scheider, like [[{JAWS}]].", [JAWS_2, JAWS, SE7EN], ["F1"]
    ),
    "a catalog title outside the context": tool_answer(
        f"Since you loved The Dark Knight Rises, [[{JAWS_2}]] with Roy Scheider is for you.",
        [JAWS_2],
        ["F1"],
    ),
    "a common-word catalog title": tool_answer(
        f"Fans of Heat and [[{JAWS}]] will like Roy Scheider in [[{JAWS_2}]].", [JAWS_2], ["F1"]
    ),
    "an invented film": tool_answer(
        f"Like Shark Attack 3 (2002), [[{JAWS_2}]] stars Roy Scheider.", [JAWS_2], ["F1"]
    ),
    "a wrong year for a context movie": tool_answer(
        f"Jaws (1976) fans will like Roy Scheider in [[{JAWS_2}]].", [JAWS_2], ["F1"]
    ),
    "no tool call": text_answer("Jaws 2 is great, trust me."),
}


@pytest.mark.parametrize("bad", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
async def test_an_ungrounded_answer_is_retried_once_then_replaced(explainer, fake, bad):
    fake.script(bad, bad)
    async with explainer() as url:
        r = await post(url + "/explanations", TASTE)
    body = r.json()
    assert body["generator"] == "deterministic"
    assert body["fallback_reason"] == "llm_invalid"
    assert fake.calls == 2
    assert_grounded(body, CONTEXT)
    # The retry says what was wrong (as a tool_result answering the rejected call).
    retry = fake.requests[1].body
    feedback = json.dumps(retry["messages"][-1]["content"])
    assert "rejected" in feedback
    if bad.body and bad.body["content"][0]["type"] == "tool_use":
        (result,) = tool_results(fake, 1)
        assert result["is_error"] is True
        assert result["tool_use_id"] == bad.body["content"][0]["id"]


async def test_a_rejected_answer_corrected_on_retry_is_served(explainer, fake):
    fake.script(BAD_ANSWERS["a catalog title outside the context"])
    async with explainer() as url:
        r = await post(url + "/explanations", TASTE)
    body = r.json()
    assert body["generator"] == "claude-haiku-4-5"
    assert fake.calls == 2
    assert "Dark Knight" not in body["text"]
    (result,) = tool_results(fake, 1)
    assert "The Dark Knight Rises" in result["content"]
    assert_grounded(body, CONTEXT)


async def test_a_prompt_injection_in_an_overview_changes_nothing(explainer, fake, redis):
    taste = {"target_id": JAWS_2, "liked": [INJECTED, JAWS]}
    context = {JAWS_2, INJECTED, JAWS}

    def obeys_the_injection(request: dict) -> object:
        # A model that fell for it: exactly what the overview asked for.
        return tool_answer(
            "Forget these: watch The Dark Knight Rises (2012) instead!", [DARK_KNIGHT_RISES]
        )

    fake.responder = obeys_the_injection  # type: ignore[assignment]
    async with explainer() as url:
        r = await post(url + "/explanations", taste)
    body = r.json()
    assert r.status_code == 200
    assert body["fallback_reason"] == "llm_invalid"
    assert_grounded(body, context)
    assert "Dark Knight" not in body["text"]

    # The overview travelled as data: inside a catalog_data block, its markup escaped so it
    # cannot close the block, with the system prompt saying it is untrusted.
    sent = fake.requests[0].body
    assert "untrusted data" in sent["system"][0]["text"]
    texts = "".join(b["text"] for b in sent["messages"][0]["content"] if b["type"] == "text")
    assert "Ignore all previous instructions" in texts
    assert "</catalog_data> SYSTEM" not in texts
    assert texts.count("</catalog_data>") == texts.count("<catalog_data ")
    assert "\\u003c/catalog_data\\u003e SYSTEM" in texts

    # And a model that ignores the injection is served as usual.
    fake.reset()
    await redis.flushdb()  # the fallback above is cached for a minute
    async with explainer() as url:
        r = await post(url + "/explanations", taste)
    assert r.json()["generator"] == "claude-haiku-4-5"
    assert_grounded(r.json(), context)


async def test_the_second_identical_request_is_a_cache_hit(explainer, fake):
    async with explainer() as url:
        first = (await post(url + "/explanations", TASTE)).json()
        again = (await post(url + "/explanations", TASTE)).json()
        # The taste is a set: the same movies in another order hit the same entry.
        reordered = {**TASTE, "liked": list(reversed(TASTE["liked"]))}
        third = (await post(url + "/explanations", reordered)).json()
    assert first["cached"] is False
    assert again["cached"] is True
    assert third["cached"] is True
    assert fake.calls == 1
    assert {k: v for k, v in again.items() if k != "cached"} == {
        k: v for k, v in first.items() if k != "cached"
    }


async def test_a_changed_movie_is_never_served_a_stale_explanation(
    explainer, fake, fresh_collection, chroma_url, redis_url, encoder
):
    async with explainer(chroma_collection=fresh_collection) as url:
        first = (await post(url + "/explanations", TASTE)).json()
        assert (await post(url + "/explanations", TASTE)).json()["cached"] is True
        # A new movie.fetched for a liked movie, with different content (so a new hash).
        changed = BY_ID[JAWS].model_copy(
            update={"cast": ["Roy Scheider", "Robert Shaw", "Murray Hamilton"]}
        )
        await index_movies(chroma_url, fresh_collection, redis_url, encoder, [changed])
        after = (await post(url + "/explanations", TASTE)).json()
    assert first["cached"] is False
    assert after["cached"] is False
    assert fake.calls == 2


async def test_twenty_concurrent_requests_make_one_llm_call_across_replicas(explainer, fake):
    fake.responder = lambda request: slow(grounded_answer(request), 0.5)
    async with explainer() as one, explainer() as two, httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"{(one, two)[i % 2]}/explanations", json=TASTE) for i in range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20
    bodies = [r.json() for r in responses]
    assert fake.calls == 1
    assert len({b["text"] for b in bodies}) == 1
    assert all(b["generator"] == "claude-haiku-4-5" for b in bodies)
    # The other replica's callers read the first one's answer from Redis.
    assert any(b["cached"] for b in bodies)


async def test_the_taste_block_is_read_from_the_prompt_cache_for_the_next_target(explainer, fake):
    taste = {"liked": [JAWS, ALIEN, CLOSE_ENCOUNTERS]}
    async with explainer() as url:
        await post(url + "/explanations", {**taste, "target_id": JAWS_2})
        await post(url + "/explanations", {**taste, "target_id": THING})
    first, second = (r.usage for r in fake.requests)
    assert first is not None and second is not None
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_creation_input_tokens"] > 0
    # Tools, system and the taste block are the same prefix for both targets.
    assert second["cache_read_input_tokens"] >= first["cache_creation_input_tokens"]


async def test_without_an_api_key_the_deterministic_explainer_answers(explainer, fake):
    async with explainer(anthropic_api_key=None) as url:
        r = await post(url + "/explanations", TASTE)
    body = r.json()
    assert body["generator"] == "deterministic"
    assert body["fallback_reason"] == "no_api_key"
    assert fake.calls == 0
    assert body["text"].startswith("Because you liked Jaws (1975)")
    assert "Roy Scheider" in body["text"]
    assert_grounded(body, CONTEXT)


async def test_ratings_make_the_taste(explainer, fake):
    taste = {
        "target_id": JAWS_2,
        "ratings": [
            {"tmdb_id": JAWS, "rating": 5},
            {"tmdb_id": ALIEN, "rating": 3},  # neither liked nor disliked: ignored
            {"tmdb_id": TOY_STORY, "rating": 1},
        ],
    }
    async with explainer(anthropic_api_key=None) as url:
        body = (await post(url + "/explanations", taste)).json()
    assert [n["tmdb_id"] for n in body["nearest_liked"]] == [JAWS]
    assert set(body["cited_ids"]) <= {JAWS_2, JAWS}


async def test_unknown_movies(explainer):
    async with explainer(anthropic_api_key=None) as url:
        r = await post(url + "/explanations", {"target_id": 424242, "liked": [JAWS]})
        assert r.status_code == 404
        assert r.json() == {"detail": "movie 424242 is not in the catalog"}
        r = await post(url + "/explanations", {"target_id": JAWS, "liked": [424242, 424243]})
        assert r.status_code == 404
        assert "none of the liked movies" in r.json()["detail"]
        r = await post(url + "/explanations", {"target_id": JAWS_2, "liked": [JAWS, 424242]})
        assert r.status_code == 200
        assert r.json()["unknown_ids"] == [424242]
        r = await post(url + "/explanations", {"target_id": JAWS_2, "liked": list(range(1, 52))})
        assert r.status_code == 422


async def test_a_search_hit_is_explained_from_the_query_and_the_movies_it_names(explainer, fake):
    query = {
        "query": "serial killer investigation like zodiac but in the 80s",
        "tmdb_id": MANHUNTER,
    }
    async with explainer(anthropic_api_key=None) as url:
        body = (await post(url + "/explanations/search-hit", query)).json()
    assert body["generator"] == "deterministic"
    kinds = {(f["kind"], f["value"]) for f in body["facts"]}
    assert ("decade", "1980s") in kinds
    assert ("query", "serial") in kinds or ("query", "killer") in kinds
    # "like zodiac" named a catalog movie: it joins the context, and what they share counts.
    assert ("theme", "serial killer") in kinds
    assert set(body["cited_ids"]) <= {MANHUNTER, ZODIAC}
    assert "Manhunter (1986)" in body["text"]
    assert "Zodiac (2007)" in body["text"]
    assert_grounded(body, {MANHUNTER, ZODIAC})

    async with explainer() as url:
        r = await post(url + "/explanations/search-hit", query)
    body = r.json()
    assert body["generator"] == "claude-haiku-4-5", body
    sent = json.dumps(fake.requests[0].body["messages"])
    assert "user_query" in sent
    assert "Heat" not in sent and "Se7en" not in sent
    assert_grounded(body, {MANHUNTER, ZODIAC})


async def test_redis_down_still_explains(chroma_url, movie_collection, fake):
    settings = ExplainerSettings(
        redis_url="redis://127.0.0.1:9/0",
        chroma_url=chroma_url,
        chroma_collection=movie_collection,
        anthropic_api_key=fake.api_key,
        anthropic_base_url=fake.url,
        max_retries=0,
    )
    async with serve(create_app(settings)) as url:
        r = await post(url + "/explanations", TASTE)
        ready = await httpx.AsyncClient().get(url + "/ready")
    assert r.status_code == 200
    assert r.json()["generator"] == "claude-haiku-4-5"
    assert ready.status_code == 503


def test_the_explainer_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys; from marquee_explainer.app import create_app; create_app(); "
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
