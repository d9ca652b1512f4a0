"""The consistency audit catches what Chroma lost or got wrong, and repair fixes it — run through
the real `marquee-embedder` CLI against real servers and a running embedder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marquee_embedder.app import create_app
from marquee_shared.events import MovieDeleted
from marquee_shared.streams import publish_events
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import fast_settings, group_done, run_cli
from tests.support.movies import fetched
from tests.support.movies import numbered as movies
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def test_audit_finds_lost_outdated_resurrected_and_orphan_records_and_repair_fixes_them(
    redis, redis_url, chroma_url, collection_name, encoder
):
    films = movies(12)
    app = create_app(fast_settings(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await publish_events(redis, [fetched(m) for m in films])
        await publish_events(redis, [MovieDeleted(source="test", tmdb_id=films[11].tmdb_id)])
        await wait_until(lambda: group_done(redis, "embedders"), what="applied")

        clean = run_cli(redis_url, chroma_url, collection_name, "audit", "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        report = json.loads(clean.stdout)["audit"]
        assert report["clean"] is True
        assert report["ledger_live"] == 11
        assert report["ledger_deleted"] == 1
        assert report["self_checked"] == 11

        # What Chroma's known bugs look like from outside: a record gone, one with old content,
        # a deleted one back, and one nobody published.
        col = chroma_collection(chroma_url, collection_name)
        lost, stale = films[0].tmdb_id, films[1].tmdb_id
        col.delete(ids=[str(lost)])
        col.update(ids=[str(stale)], metadatas=[{"content_hash": "0" * 32}])
        vec = np.ones(384, dtype=np.float32) / np.sqrt(384)
        col.upsert(
            ids=[str(films[11].tmdb_id), "999999"],
            embeddings=[vec, -vec],
            metadatas=[{"content_hash": "x"}, {"content_hash": "y"}],
        )

        found = run_cli(redis_url, chroma_url, collection_name, "audit", "--json")
        assert found.returncode == 3, found.stdout + found.stderr
        report = json.loads(found.stdout)["audit"]
        assert report["missing"] == [lost]
        assert report["outdated"] == [stale]
        assert report["resurrected"] == [films[11].tmdb_id]
        assert report["orphans"] == [999999]

        fixed = run_cli(
            redis_url, chroma_url, collection_name, "repair", "--drop-orphans", "--json"
        )
        assert fixed.returncode == 0, fixed.stderr
        assert json.loads(fixed.stdout)["repair"] == {"deleted": 3, "republished": 2}
        await wait_until(lambda: group_done(redis, "embedders"), what="repair applied")

        again = run_cli(redis_url, chroma_url, collection_name, "audit", "--json")
        assert again.returncode == 0, again.stdout
        assert json.loads(again.stdout)["audit"]["clean"] is True
    assert chroma_collection(chroma_url, collection_name).count() == 11


def test_dead_letter_cli(redis_url, chroma_url, collection_name):
    import redis as redis_sync

    client = redis_sync.Redis.from_url(redis_url)
    client.delete("marquee:catalog:v1:dead")
    ids = [
        client.xadd(
            "marquee:catalog:v1:dead",
            {
                "stream": "marquee:catalog:v1",
                "entry_id": f"1-{i}",
                "reason": f"bad {i}",
                "fields": json.dumps({"event": "{}"}),
                "consumer": "c",
                "failed_at": "now",
                "deliveries": "1",
            },
        ).decode()
        for i in range(3)
    ]
    listed = run_cli(redis_url, chroma_url, collection_name, "deadletters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["reason"] for d in json.loads(listed.stdout)["items"]] == ["bad 0", "bad 1", "bad 2"]
    shown = run_cli(redis_url, chroma_url, collection_name, "deadletters", "show", ids[1])
    assert json.loads(shown.stdout)["entry_id"] == "1-1"
    before = client.xlen("marquee:catalog:v1")
    replayed = run_cli(
        redis_url, chroma_url, collection_name, "deadletters", "replay", ids[0], "0-1"
    )
    assert replayed.returncode == 1  # one id did not exist, and says so
    assert "not found: 0-1" in replayed.stderr
    assert client.xlen("marquee:catalog:v1") == before + 1
    purged = run_cli(redis_url, chroma_url, collection_name, "deadletters", "purge", "--all")
    assert "purged 2" in purged.stdout
    assert client.xlen("marquee:catalog:v1:dead") == 0
    assert run_cli(redis_url, chroma_url, collection_name, "deadletters", "purge").returncode == 2
    client.close()
