"""The ledger's stored value (``"<occurred_at>|<content hash or ->|<event JSON>"``): what the
embedders write is what repair, the audit and a migration's backfill read back, and one bad
value never fails the reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from marquee_embedder.ledger import _encode, decode_entry
from marquee_shared.events import MovieDeleted
from tests.support.movies import JAWS, fetched, movie

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_a_fetched_movie_comes_back_whole_with_its_time_and_hash() -> None:
    event = fetched(JAWS, occurred_at=AT)
    entry = decode_entry(JAWS.tmdb_id, _encode(event).encode())
    assert entry.tmdb_id == JAWS.tmdb_id
    assert entry.occurred_at == AT.timestamp()  # repr round-trips the float exactly
    assert entry.content_hash == JAWS.content_hash()
    assert entry.event == event
    assert entry.unreadable is None


def test_a_deletion_has_no_content_hash() -> None:
    event = MovieDeleted(source="test", tmdb_id=578, occurred_at=AT)
    entry = decode_entry(578, _encode(event))
    assert entry.content_hash is None
    assert entry.event == event


def test_pipes_in_the_text_do_not_cut_the_event() -> None:
    film = movie(7, "A | B", overview="left | right | centre")
    entry = decode_entry(7, _encode(fetched(film, occurred_at=AT)))
    assert entry.event is not None
    assert entry.event.movie.title == "A | B"  # type: ignore[union-attr]
    assert entry.event.movie.overview == "left | right | centre"  # type: ignore[union-attr]


def test_a_stored_event_that_no_longer_passes_the_contract_keeps_its_time_and_hash() -> None:
    # Recorded before a rule was added (here: years are bounded): its version still orders
    # later events, but it cannot be re-applied, and it says why.
    good = _encode(fetched(movie(9, "Old rules", 1999), occurred_at=AT))
    ts, digest, event_json = good.split("|", 2)
    body = json.loads(event_json)
    body["movie"]["year"] = 1
    entry = decode_entry(9, f"{ts}|{digest}|{json.dumps(body)}")
    assert entry.event is None
    assert entry.occurred_at == AT.timestamp()
    assert entry.content_hash == digest
    assert entry.unreadable is not None
    assert "year" in entry.unreadable
