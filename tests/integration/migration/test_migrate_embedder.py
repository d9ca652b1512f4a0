"""``marquee-embedder migrate`` against real redis-server and chroma: the embedders fill the new
model's collection from the ledger while catalog events keep coming (written to both), switch,
rollback and finish flip the alias, and a replica that dies mid-chunk loses nothing."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from marquee_embedder import cli
from marquee_embedder.app import create_app
from marquee_embedder.ledger import Ledger
from marquee_embedder.migration import MigrationStore
from marquee_shared.events import CATALOG_STREAM
from marquee_shared.index import movie_document
from marquee_shared.migration import alias_key, read_live, read_status
from marquee_shared.model.encoder import load_encoder
from marquee_shared.model.identity import ModelId
from marquee_shared.model.resolve import resolve_model
from marquee_shared.streams import publish_events
from tests.support.asgi import serve
from tests.support.chroma import chroma_client, stamp_of
from tests.support.embedder import wait_drained
from tests.support.migration import MOVIES, deleted, fetched, migrate, settings_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def wait_verified_after(redis: Any, logical: str, moment: datetime) -> None:
    """Until a verification that started after ``moment`` found the target complete."""

    async def done() -> bool:
        status = await read_status(redis, logical)
        return (
            status is not None
            and status.missing == 0
            and status.verified_at is not None
            and status.verified_at > moment + timedelta(seconds=1)
        )

    await wait_until(done, what="verified complete", timeout=90)


def records(chroma_url: str, name: str) -> dict[int, tuple[str, list[float]]]:
    got = (
        chroma_client(chroma_url)
        .get_collection(name, embedding_function=None)
        .get(include=["metadatas", "embeddings"])
    )
    return {
        int(i): (str(md["content_hash"]), list(v))
        for i, md, v in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True)
    }


async def live_ledger(redis: Any) -> dict[int, str]:
    entries = await Ledger(redis, f"{CATALOG_STREAM}:ledger").scan()
    return {e.tmdb_id: e.content_hash for e in entries if e.content_hash is not None}


async def test_migrate_switch_rollback_finish_with_events_flowing(
    redis, redis_url, chroma_url, collection_name, encoder, alt_model, cli_env, capsys
):
    alt_path, alt_id = alt_model
    await publish_events(redis, [fetched(m) for m in MOVIES])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url:
        await wait_drained(redis)
        code, _, err = await migrate(capsys, "switch")
        assert code == cli.EXIT_REFUSED
        assert "no migration in progress" in err

        code, out, err = await migrate(capsys, "start", "--model", str(alt_path), "--json")
        assert code == 0, err
        started = json.loads(out)
        target = started["target"]["collection"]
        assert started["target"]["model"] == str(alt_id)
        assert started["source"]["collection"] == collection_name
        assert stamp_of(chroma_url, target) == str(alt_id)
        # Starting the same migration again is a no-op; another model is refused meanwhile.
        code, _, _ = await migrate(capsys, "start", "--model", str(alt_path))
        assert code == 0
        code, _, err = await migrate(capsys, "start", "--model", "stock")
        assert code == cli.EXIT_REFUSED

        # Updates, a deletion and a new movie while the copy runs.
        changed = MOVIES[0].model_copy(update={"overview": "Rewritten: a lighthouse keeper."})
        fresh = MOVIES[0].model_copy(update={"tmdb_id": 5000, "title": "Brand New"})
        rated = MOVIES[2].model_copy(update={"vote_count": 99999})
        await publish_events(
            redis, [fetched(changed, 5), deleted(MOVIES[1].tmdb_id, 5), fetched(fresh, 5)]
        )
        await publish_events(redis, [fetched(rated, 6), fetched(MOVIES[0], 1)])  # the last: stale
        await wait_drained(redis)
        await wait_verified_after(redis, collection_name, datetime.now(UTC))

        ledger = await live_ledger(redis)
        assert ledger[MOVIES[0].tmdb_id] == changed.content_hash()
        assert MOVIES[1].tmdb_id not in ledger
        for name in (collection_name, target):
            held = records(chroma_url, name)
            assert {i: h for i, (h, _) in held.items()} == ledger, name
        # The target's vectors are the new model's: none is the old model's vector (the test
        # model is the stock one quantized, so the two agree to about 0.99 and no closer; int8's
        # dynamic activation scales make even one model's vectors vary that much with the batch).
        alt = load_encoder(alt_path, "onnx-int8")
        new, old = records(chroma_url, target), records(chroma_url, collection_name)
        cosines = [float(np.dot(new[i][1], old[i][1])) for i in new]
        assert max(cosines) < 0.9999
        assert min(cosines) > 0.97
        expected = alt.encode([movie_document(fresh)])[0]
        assert float(np.dot(new[5000][1], expected)) > 0.97

        code, out, err = await migrate(capsys, "switch", "--json")
        assert code == 0, err
        assert json.loads(out)["phase"] == "switched"
        live = await read_live(redis, collection_name)
        assert (live.collection, live.model, live.model_source) == (
            target,
            str(alt_id),
            str(alt_path),
        )
        code, _, err = await migrate(capsys, "abort")
        assert code == cli.EXIT_REFUSED
        assert "roll back first" in err

        # Double writes go on after the switch, so a rollback finds the old collection current.
        again = changed.model_copy(update={"overview": "Rewritten twice: a lighthouse."})
        await publish_events(redis, [fetched(again, 10), deleted(MOVIES[3].tmdb_id, 10)])
        await wait_drained(redis)
        async with httpx.AsyncClient() as client:
            # The replica's live model is now the new one (/ready, marquee_model_info).
            assert (await client.get(url + "/ready")).json()["model"] == str(alt_id)
        ledger = await live_ledger(redis)
        for name in (collection_name, target):
            assert {i: h for i, (h, _) in records(chroma_url, name).items()} == ledger, name

        code, out, _ = await migrate(capsys, "rollback", "--json")
        assert code == 0
        assert json.loads(out)["phase"] == "ready"
        assert (await read_live(redis, collection_name)).collection == collection_name
        code, _, err = await migrate(capsys, "finish")
        assert code == cli.EXIT_REFUSED
        assert "not switched" in err

        code, _, err = await migrate(capsys, "switch")
        assert code == 0, err
        code, out, err = await migrate(capsys, "finish", "--json")
        assert code == 0, err
        assert json.loads(out) == {"dropped": collection_name, "live_collection": target}
        assert await read_status(redis, collection_name) is None
        names = {c.name for c in chroma_client(chroma_url).list_collections()}
        assert collection_name not in names
        assert target in names

        # After finish: events go to the new collection alone, without errors.
        last = MOVIES[4].model_copy(update={"overview": "After the migration."})
        await publish_events(redis, [fetched(last, 20)])
        await wait_drained(redis)
        assert records(chroma_url, target)[last.tmdb_id][0] == last.content_hash()
        assert not await redis.hlen(f"{CATALOG_STREAM}:errors")
        assert collection_name not in {c.name for c in chroma_client(chroma_url).list_collections()}

    # A replica started now follows the alias: the new collection, with the new model.
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url, httpx.AsyncClient() as client:
        ready = (await client.get(url + "/ready")).json()
    assert ready["model"] == str(alt_id)
    stock = resolve_model("stock")[1]
    assert str(stock) != str(alt_id)


async def test_two_replicas_share_the_copy_and_a_dead_replicas_chunk_is_taken_over(
    redis, redis_url, chroma_url, collection_name, encoder, alt_model, cli_env, capsys
):
    alt_path, _ = alt_model
    await publish_events(redis, [fetched(m) for m in MOVIES])
    first = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(first):
        await wait_drained(redis)
    # With no embedder running: start, and a replica claims a chunk and dies (kill -9: no
    # completion, its lease runs out).
    code, _, err = await migrate(capsys, "start", "--model", str(alt_path))
    assert code == 0, err
    store = MigrationStore(redis, collection_name, f"{CATALOG_STREAM}:ledger")
    dead = await store.claim("killed-replica", count=8, lease_ms=1500)
    assert dead is not None
    assert dead.entries
    cursor_after_dead = (await store.fields())["cursor"]
    assert cursor_after_dead != "0"

    apps = [
        create_app(
            settings_for(redis_url, chroma_url, collection_name, migration_lease_s=1.5),
            encoder=encoder,
        )
        for _ in range(2)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(serve(app))

        async def ready() -> bool:
            status = await read_status(redis, collection_name)
            return status is not None and status.phase == "ready"

        await wait_until(ready, what="ready", timeout=90)
    status = await read_status(redis, collection_name)
    assert status is not None
    # Every ledger entry was counted once: the dead replica's chunk by its new holder, no chunk
    # by two replicas.
    assert status.scanned == len(MOVIES)
    assert status.copied == len(MOVIES)
    assert status.missing == 0
    assert status.coverage_percent == 100.0
    ledger = await live_ledger(redis)
    held = records(chroma_url, status.target.collection)
    assert {i: h for i, (h, _) in held.items()} == ledger
    assert not await redis.hlen(f"{store.claims}")


async def test_switch_is_refused_until_the_target_is_verified_complete(
    redis, redis_url, chroma_url, collection_name, encoder, alt_model, cli_env, capsys
):
    alt_path, _ = alt_model
    await publish_events(redis, [fetched(m) for m in MOVIES[:5]])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_drained(redis)
    # No embedder runs: the migration stays in "copying".
    code, _, err = await migrate(capsys, "start", "--model", str(alt_path))
    assert code == 0, err
    code, out, _ = await migrate(capsys, "status")
    assert code == 0
    assert "phase:    copying" in out
    assert f"serving:  {collection_name}\n" in out
    code, _, err = await migrate(capsys, "switch")
    assert code == cli.EXIT_REFUSED
    assert "not covered yet (phase copying)" in err
    assert not await redis.exists(alias_key(collection_name))
    # A verification that found gaps, or one too old, does not allow it either.
    await redis.hset(
        f"marquee:index:v1:{collection_name}:migration",
        mapping={"phase": "ready", "missing": "2", "verified_at": str(int(time.time() * 1000))},
    )
    code, _, err = await migrate(capsys, "switch")
    assert "lacks 2 movie(s)" in err
    await redis.hset(
        f"marquee:index:v1:{collection_name}:migration",
        mapping={"missing": "0", "verified_at": str(int(time.time() * 1000) - 3_600_000)},
    )
    code, _, err = await migrate(capsys, "switch")
    assert code == cli.EXIT_REFUSED
    assert "s old" in err
    # Abort drops the target and forgets the migration.
    code, _, err = await migrate(capsys, "abort")
    assert code == 0, err
    assert await read_status(redis, collection_name) is None
    code, out, _ = await migrate(capsys, "status")
    assert out == f"no migration; serving from {collection_name}\n"
    target = f"{collection_name}--stock-alt-{ModelId.parse(str(alt_model[1])).digest}"
    assert target not in {c.name for c in chroma_client(chroma_url).list_collections()}


async def test_a_replica_that_cannot_load_the_new_model_keeps_applying_live_events(
    redis, redis_url, chroma_url, collection_name, encoder, alt_model, cli_env, capsys, tmp_path
):
    alt_path, _ = alt_model
    # The model as the operator named it, then gone from this replica (say, not mounted).
    moved = tmp_path / "model"
    shutil.copytree(alt_path, moved)
    await publish_events(redis, [fetched(m) for m in MOVIES[:3]])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_drained(redis)
    code, _, err = await migrate(capsys, "start", "--model", str(moved))
    assert code == 0, err
    shutil.rmtree(moved)

    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await publish_events(redis, [fetched(m, 1) for m in MOVIES[3:8]])
        await wait_drained(redis)
    held = records(chroma_url, collection_name)
    assert sorted(held) == [m.tmdb_id for m in MOVIES[:8]]
    assert not await redis.exists("marquee:catalog:v1:dead")
    status = await read_status(redis, collection_name)
    assert status is not None
    assert status.phase == "copying"  # nothing copied by a replica without the model
    assert status.copied == 0
