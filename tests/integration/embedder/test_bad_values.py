"""Bad values written straight onto the stream (XADD), and records that no longer pass the
contract, against real redis-server and chroma processes (issue 15, item 9).

Before: invalid UTF-8 was indexed with U+FFFD in place of the bytes; a release date in year 1
reached Chroma, after which reading that movie failed in search (500), in the ledger (the event
was retried five times and dead-lettered although applied) and in the audit (a traceback).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from uuid import uuid4

import httpx
import pytest

from marquee_embedder.app import create_app
from marquee_embedder.indexer import CatalogIndexer
from marquee_embedder.ledger import Ledger
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared import deadletters
from marquee_shared.chroma import open_collection
from marquee_shared.events import (
    CATALOG_STREAM,
    DEAD_LETTER_STREAM,
    UNREADABLE_FIELD,
    Movie,
    MovieFetched,
)
from tests.support.asgi import serve
from tests.support.chroma import chroma_collection
from tests.support.embedder import run_cli, settings_for, wait_drained
from tests.support.movies import JAWS, MATRIX, fetched

pytestmark = pytest.mark.integration


def event_json(**changes: object) -> dict[str, object]:
    event = json.loads(fetched(JAWS).model_dump_json())
    movie = event["movie"]
    for key, value in changes.items():
        (movie if key in movie else event)[key] = value
    return event


async def test_bad_values_sent_by_xadd_are_dead_lettered_with_the_reason(
    redis, redis_url, chroma_url, collection_name, encoder
):
    not_utf8 = json.dumps(event_json(title="Björk"), ensure_ascii=False).encode()
    not_utf8 = not_utf8.replace("ö".encode(), b"\xf6")  # Latin-1, not UTF-8
    await redis.xadd(CATALOG_STREAM, {"event": not_utf8})
    year_one = event_json(release_date="0001-01-01", year=None)
    await redis.xadd(CATALOG_STREAM, {"event": json.dumps(year_one)})
    future = event_json(occurred_at="2099-01-01T00:00:00Z")
    await redis.xadd(CATALOG_STREAM, {"event": json.dumps(future)})
    infinite = json.dumps(event_json()).replace('"popularity": null', '"popularity": Infinity')
    await redis.xadd(CATALOG_STREAM, {"event": infinite})
    await redis.xadd(CATALOG_STREAM, {"event": fetched(MATRIX).model_dump_json()})

    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await wait_drained(redis)

    reasons = [f[b"reason"].decode() for _, f in await redis.xrange(DEAD_LETTER_STREAM)]
    assert len(reasons) == 4, reasons
    assert reasons[0].startswith("event is not valid UTF-8: byte 0xf6 at byte ")
    assert "movie.release_date" in reasons[1]
    assert "outside 1870-2100" in reasons[1]
    assert "occurred_at" in reasons[2]
    assert "in the future" in reasons[2]
    assert "movie.popularity: Input should be a finite number" in reasons[3]
    # Only the valid event reached the index: nothing with U+FFFD, year 1 or a 2099 date.
    assert chroma_collection(chroma_url, collection_name).get()["ids"] == ["603"]

    # The parked entry shows U+FFFD for the bad byte, and why; replayed (after a fix, say),
    # it goes back as published, without the reader's note.
    letters = await deadletters.list_dead_letters(redis)
    shown = json.loads(letters[0].model_dump_json())
    assert "Bj\ufffdrk" in shown["fields"]["event"]
    assert shown["fields"][UNREADABLE_FIELD] == reasons[0]
    replayed = await deadletters.replay_dead_letters(redis, [letters[0].id])
    (_, fields), *_ = await redis.xrange(CATALOG_STREAM, min=replayed[letters[0].id])
    assert set(fields) == {b"event"}


async def test_a_stored_record_that_no_longer_passes_the_contract_is_skipped_and_reported(
    redis, redis_url, chroma_url, collection_name, encoder
):
    # As written before release dates were bounded: year 1 in Chroma and in the ledger.
    old = Movie.model_construct(**{**JAWS.model_dump(), "release_date": date(1, 1, 1), "year": 1})
    event = MovieFetched.model_construct(
        schema_version=1,
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        source="before-the-fix",
        type="movie.fetched",
        movie=old,
    )
    _, collection = await open_collection(httpx.URL(chroma_url), collection_name)  # type: ignore[arg-type]
    ledger = Ledger(redis, f"{CATALOG_STREAM}:ledger")
    indexer = CatalogIndexer(collection, encoder, ledger)
    # Applying it reads the ledger back, which failed on the unreadable entry: the event was
    # retried and dead-lettered although written.
    result = await indexer.apply([event])
    assert result.counts["embedded"] == 1
    await indexer.apply([fetched(MATRIX)])
    (entry,) = (await ledger.latest([578])).values()
    assert entry.event is None
    assert entry.unreadable
    assert "release_date" in entry.unreadable

    settings = SearchSettings(
        chroma_url=chroma_url, chroma_collection=collection_name, redis_url=redis_url
    )
    async with (
        serve(create_search(settings, encoder=encoder)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        missing = await client.get("/movies/578")
        assert missing.status_code == 404, missing.text
        assert (await client.get("/movies/603")).status_code == 200
        for mode in ("semantic", "hybrid", "keyword"):
            found = await client.get("/search", params={"q": "shark island police", "mode": mode})
            assert found.status_code == 200, found.text
            assert 578 not in [h["tmdb_id"] for h in found.json()["results"]]

    audit = run_cli(redis_url, chroma_url, collection_name, "audit", "--json")
    assert audit.returncode == 3, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)["audit"]
    assert report["unreadable"] == [578]
    assert (report["missing"], report["outdated"], report["orphans"]) == ([], [], [])
    text = run_cli(redis_url, chroma_url, collection_name, "audit")
    assert re.search(r"^unreadable\s+1\s+578$", text.stdout, re.MULTILINE), text.stdout

    # A corrected version replaces it through the normal path, and all is clean again.
    fixed = fetched(JAWS)
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        await redis.xadd(CATALOG_STREAM, {"event": fixed.model_dump_json()})
        await wait_drained(redis)
    clean = run_cli(redis_url, chroma_url, collection_name, "audit", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
