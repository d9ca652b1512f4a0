"""Search replicas and the explainer follow the index alias without a restart: a switch (and a
rollback) moves every one of them to the other collection and its model while searches keep
being answered, none of them failing. Real Redis, Chroma, embedder, search and explainer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from marquee_embedder.app import create_app as create_embedder
from marquee_explainer.app import create_app as create_explainer
from marquee_explainer.settings import ExplainerSettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared import migration
from marquee_shared.migration import read_status
from marquee_shared.model.resolve import resolve_model
from marquee_shared.streams import publish_events
from tests.support.asgi import serve
from tests.support.embedder import wait_drained
from tests.support.migration import MOVIES, fetched, migrate, settings_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

QUERIES = ["a tale of a shark", "ghost and a robot", "Film 7", "pirate moon chapter 12"]


def search_settings(redis_url: str, chroma_url: str, collection: str) -> SearchSettings:
    return SearchSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection,
        alias_poll_s=0.2,
        keyword_startup_wait_s=10,
        log_format="json",
    )


async def ready_model(client: httpx.AsyncClient, url: str) -> str:
    return str((await client.get(url + "/ready")).json().get("model"))


class Load:
    """Searches in a loop until stopped; every status code kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.codes: list[int] = []
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            i = 0
            while True:
                r = await client.get(
                    self.url + "/search", params={"q": QUERIES[i % len(QUERIES)], "k": 5}
                )
                self.codes.append(r.status_code)
                if r.status_code != 200:
                    self.errors.append(r.text[:300])
                elif not r.json()["results"]:
                    self.errors.append(f"no results for {QUERIES[i % len(QUERIES)]!r}")
                i += 1

    def __enter__(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_search_and_explainer_follow_switch_rollback_and_finish(
    redis, redis_url, chroma_url, collection_name, encoder, alt_model, cli_env, capsys
):
    alt_path, alt_id = alt_model
    stock = str(resolve_model("stock")[1])
    await publish_events(redis, [fetched(m) for m in MOVIES])
    embedder = create_embedder(
        settings_for(redis_url, chroma_url, collection_name), encoder=encoder
    )
    search_app = create_search(
        search_settings(redis_url, chroma_url, collection_name), encoder=encoder
    )
    explainer_app = create_explainer(
        ExplainerSettings(
            redis_url=redis_url,
            chroma_url=chroma_url,
            chroma_collection=collection_name,
            anthropic_api_key=None,
            log_format="json",
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve(embedder))
        await wait_drained(redis)
        search = await stack.enter_async_context(serve(search_app))
        explainer = await stack.enter_async_context(serve(explainer_app))
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        assert await ready_model(client, search) == stock

        code, _, err = await migrate(capsys, "start", "--model", str(alt_path))
        assert code == 0, err

        async def covered() -> bool:
            status = await read_status(redis, collection_name)
            return status is not None and status.phase == "ready"

        with Load(search) as load:
            await wait_until(covered, what="covered", timeout=90)
            # Still the old collection and model until the switch.
            assert await ready_model(client, search) == stock
            await migration.switch(redis, collection_name)

            async def followed(model: str) -> Any:
                async def check() -> bool:
                    return await ready_model(client, search) == model

                return check

            await wait_until(
                await followed(str(alt_id)), what="search on the new model", timeout=60
            )
            hits = (await client.get(search + "/search", params={"q": "Film 7", "k": 3})).json()
            assert hits["results"][0]["tmdb_id"] == MOVIES[7].tmdb_id
            # An update published now reaches the replica's new mirror.
            renamed = MOVIES[9].model_copy(update={"title": "Zyzzyva Returns"})
            await publish_events(redis, [fetched(renamed, 30)])

            async def renamed_found() -> bool:
                r = await client.get(search + "/search", params={"q": "Zyzzyva", "k": 3})
                results = r.json()["results"]
                return bool(results) and results[0]["tmdb_id"] == renamed.tmdb_id

            await wait_until(
                renamed_found, what="the update searchable after the switch", timeout=90
            )

            await migration.rollback(redis, collection_name)
            await wait_until(await followed(stock), what="search back on the old model", timeout=60)
            assert await renamed_found()  # the double writes kept the old collection current
            await migration.switch(redis, collection_name)
            await wait_until(
                await followed(str(alt_id)), what="search on the new model again", timeout=60
            )
            switched_at = len(load.codes)

            async def searches_on_the_new_side() -> bool:
                return len(load.codes) >= switched_at + 10

            await wait_until(searches_on_the_new_side, what="searches after the switch")
        assert load.codes, "no search ran during the switch"
        assert set(load.codes) == {200}, load.errors[:5]
        assert not load.errors
        metrics = (await client.get(search + "/metrics")).text
        assert "marquee_search_index_switches_total 3.0" in metrics

        # The explainer followed too: once the old collection is dropped, it still answers.
        status = await read_status(redis, collection_name)
        assert status is not None
        alt_collection = status.target.collection

        async def explainer_reads_the_target() -> bool:
            ready = (await client.get(explainer + "/ready")).json()
            return bool(ready.get("collection") == alt_collection)

        await wait_until(explainer_reads_the_target, what="the explainer on the new collection")
        code, _, err = await migrate(capsys, "finish")
        assert code == 0, err
        r = await client.post(
            explainer + "/explanations",
            json={"target_id": MOVIES[3].tmdb_id, "liked": [MOVIES[4].tmdb_id]},
        )
        assert r.status_code == 200, r.text
        r = await client.get(search + "/search", params={"q": "Film 7", "k": 3})
        assert r.status_code == 200, r.text
