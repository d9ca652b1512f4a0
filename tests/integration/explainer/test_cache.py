"""The explanation cache and its single flight, on a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from marquee_explainer.cache import PREFIX, ExplanationCache, cache_key
from marquee_shared.api import Explanation

pytestmark = pytest.mark.integration


def explanation(
    text: str = "Because you liked Jaws (1975), we picked Jaws 2 (1978).",
) -> Explanation:
    return Explanation(
        target_id=579,
        text=text,
        confidence="high",
        cited_ids=[579, 578],
        facts=[],
        generator="deterministic",
        cached=False,
    )


class Generator:
    """Counts calls; answers after a pause, like an LLM would."""

    def __init__(self, ttl: int = 60, pause: float = 0.2) -> None:
        self.calls = 0
        self.ttl = ttl
        self.pause = pause

    async def __call__(self) -> tuple[Explanation, int]:
        self.calls += 1
        await asyncio.sleep(self.pause)
        return explanation(f"answer {self.calls}"), self.ttl


def test_keys_depend_on_every_part():
    base = {"target": [[579, "h1"]], "liked": [[578, "h2"]], "versions": ["p1", "m"]}
    assert cache_key(base) == cache_key(dict(reversed(base.items())))
    assert cache_key(base) != cache_key({**base, "liked": [[578, "h3"]]})
    assert cache_key(base) != cache_key({**base, "versions": ["p2", "m"]})


async def test_one_generation_for_concurrent_callers_then_hits(redis):
    cache = ExplanationCache(redis, lock_ttl_s=5, wait_s=5)
    generate = Generator()
    results = await asyncio.gather(*(cache.get_or_generate("k", generate) for _ in range(20)))
    assert generate.calls == 1
    assert {r.text for r, _ in results} == {"answer 1"}
    assert not any(cached for _, cached in results)
    again, cached = await cache.get_or_generate("k", generate)
    assert cached and again.text == "answer 1"
    assert 0 < await redis.ttl(f"{PREFIX}:k") <= 60
    assert not await redis.exists(f"{PREFIX}:lock:k")  # released by its holder


async def test_replicas_wait_for_the_lock_holder(redis, redis_url):
    one = ExplanationCache(redis, lock_ttl_s=5, wait_s=5)
    other_client = Redis.from_url(redis_url)
    two = ExplanationCache(other_client, lock_ttl_s=5, wait_s=5)
    generate = Generator(pause=0.3)
    try:
        first, second = await asyncio.gather(
            one.get_or_generate("k", generate), two.get_or_generate("k", generate)
        )
    finally:
        await other_client.aclose()
    assert generate.calls == 1
    assert first[0].text == second[0].text
    assert sorted([first[1], second[1]]) == [False, True]


async def test_a_dead_holders_lock_expires_and_another_takes_over(redis):
    await redis.set(f"{PREFIX}:lock:k", "someone-who-crashed", px=400)
    cache = ExplanationCache(redis, lock_ttl_s=5, wait_s=5)
    generate = Generator(pause=0)
    started = time.monotonic()
    _, cached = await cache.get_or_generate("k", generate)
    assert time.monotonic() - started >= 0.35
    assert generate.calls == 1
    assert not cached


async def test_an_answer_with_no_ttl_is_not_kept(redis):
    cache = ExplanationCache(redis, lock_ttl_s=5, wait_s=5)
    generate = Generator(ttl=0, pause=0)
    await cache.get_or_generate("k", generate)
    await cache.get_or_generate("k", generate)
    assert generate.calls == 2


async def test_redis_down_means_uncached_not_failed():
    down = Redis.from_url("redis://127.0.0.1:9/0")
    try:
        cache = ExplanationCache(down, lock_ttl_s=5, wait_s=5)
        generate = Generator(pause=0)
        result, cached = await cache.get_or_generate("k", generate)
    finally:
        await down.aclose()
    assert result.text == "answer 1"
    assert not cached
