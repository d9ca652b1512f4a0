"""The public event contract: what validates, what does not, and why."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from marquee_shared.events import (
    MAX_EVENT_BYTES,
    InvalidEventError,
    Movie,
    MovieDeleted,
    MovieFetched,
    decode_event,
    encode_event,
)


def test_round_trip_through_the_wire_format():
    event = MovieFetched(
        source="test",
        movie=Movie(
            tmdb_id=603, title="The Matrix", release_date=date(1999, 3, 30), genres=["Action"]
        ),
    )
    fields = encode_event(event)
    assert list(fields) == ["event"]
    assert decode_event({b"event": fields["event"].encode()}) == event
    assert decode_event(encode_event(MovieDeleted(source="x", tmdb_id=5))).tmdb_id == 5  # type: ignore[union-attr]


def test_year_is_derived_from_the_release_date_and_must_agree_with_it():
    assert Movie(tmdb_id=1, title="A", release_date=date(2001, 5, 1)).year == 2001
    with pytest.raises(ValidationError, match="contradicts release_date"):
        Movie(tmdb_id=1, title="A", year=1999, release_date=date(2001, 5, 1))


@pytest.mark.parametrize(
    ("movie", "where"),
    [
        ({"tmdb_id": 0, "title": "A"}, "tmdb_id"),
        ({"tmdb_id": 1, "title": ""}, "title"),
        ({"tmdb_id": 1, "title": "A", "vote_average": 11}, "vote_average"),
        ({"tmdb_id": 1, "title": "A", "original_language": "English"}, "original_language"),
        ({"tmdb_id": 1, "title": "A", "overveiw": "typo"}, "overveiw"),
        ({"tmdb_id": 1, "title": "A", "genres": [""]}, "genres"),
    ],
)
def test_invalid_movies_are_rejected_with_the_field_named(movie, where):
    raw = json.dumps({"type": "movie.fetched", "source": "t", "movie": movie})
    with pytest.raises(InvalidEventError) as exc:
        decode_event({"event": raw})
    assert where in exc.value.reason


def test_unknown_type_missing_field_and_oversized_entries_are_invalid():
    with pytest.raises(InvalidEventError, match=r"movie\.updated"):
        decode_event({"event": '{"type": "movie.updated", "source": "x"}'})
    with pytest.raises(InvalidEventError, match="no 'event' field"):
        decode_event({"data": "{}"})
    with pytest.raises(InvalidEventError, match="limit"):
        decode_event({"event": "x" * (MAX_EVENT_BYTES + 1)})
    with pytest.raises(InvalidEventError, match="occurred_at"):
        decode_event(
            {
                "event": '{"type": "movie.deleted", "source": "x", "tmdb_id": 1, "occurred_at": "2024-01-01T00:00:00"}'
            }
        )


def test_hashes_separate_text_changes_from_figure_changes():
    base = Movie(tmdb_id=1, title="A", overview="x", vote_average=5.0)
    rerated = base.model_copy(update={"vote_average": 6.0})
    rewritten = base.model_copy(update={"overview": "y"})
    assert base.text_hash() == rerated.text_hash()
    assert base.content_hash() != rerated.content_hash()
    assert base.text_hash() != rewritten.text_hash()
    assert (
        Movie(tmdb_id=1, title="A", overview="x", vote_average=5.0).content_hash()
        == base.content_hash()
    )
