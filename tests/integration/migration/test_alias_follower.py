"""The alias follower (search replicas, explainer) on a real Redis: a change is handed over once,
a change that fails to load leaves the current collection serving and is retried."""

from __future__ import annotations

import pytest

from marquee_shared.migration import AliasFollower, LiveIndex, alias_key, read_live

pytestmark = pytest.mark.integration


async def test_a_failed_change_keeps_the_current_collection_and_is_retried(redis, collection_name):
    seen: list[str] = []
    failures = iter([RuntimeError("model not there yet")])

    async def on_change(live: LiveIndex) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        seen.append(live.collection)

    start = await read_live(redis, collection_name)
    assert start == LiveIndex(collection_name)
    follower = AliasFollower(redis, collection_name, start, on_change, service="test")
    assert await follower.check() is False  # no alias: nothing to follow

    await redis.hset(
        alias_key(collection_name),
        mapping={"collection": "other", "model": "m@1+0123456789ab", "model_source": "/m"},
    )
    with pytest.raises(RuntimeError, match="model not there yet"):
        await follower.check()
    assert follower.current.collection == collection_name
    assert await follower.check() is True
    assert follower.current == LiveIndex("other", "m@1+0123456789ab", "/m")
    assert await follower.check() is False  # followed once
    assert seen == ["other"]
