"""The public event contract: what validates, what does not, and why."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from marquee_shared.events import (
    MAX_CLOCK_SKEW,
    MAX_EVENT_BYTES,
    UNREADABLE_FIELD,
    InvalidEventError,
    Movie,
    MovieDeleted,
    MovieFetched,
    decode_event,
    encode_event,
    utf8_problem,
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
        ({"tmdb_id": 1, "title": "A", "poster_path": "https://e.com/x.jpg"}, "poster_path"),
        ({"tmdb_id": 1, "title": "A", "backdrop_path": "/../../x.jpg"}, "backdrop_path"),
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


def _fetched(movie: dict[str, object], **event: object) -> str:
    return json.dumps(
        {"type": "movie.fetched", "source": "t", "movie": movie, **event}, ensure_ascii=False
    )


def test_a_release_date_gives_a_year_within_the_years_bounds():
    # Year 1 passed once (year was bounded, the year derived from the date was not): it
    # reached the index, and every reader of that record failed (issue 15, item 9).
    for day in ("0001-01-01", "1869-12-31", "2101-01-01"):
        with pytest.raises(InvalidEventError, match=r"movie\.release_date.*outside 1870-2100"):
            decode_event({"event": _fetched({"tmdb_id": 1, "title": "A", "release_date": day})})
    assert Movie(tmdb_id=1, title="A", release_date=date(1870, 1, 1)).year == 1870
    assert Movie(tmdb_id=1, title="A", release_date=date(2100, 12, 31)).year == 2100


def test_an_event_from_the_future_is_refused_beyond_a_little_clock_skew():
    # The newest event wins: one dated 2099 would silently win over every later correction.
    with pytest.raises(InvalidEventError, match=r"occurred_at.*in the future"):
        decode_event(
            {"event": _fetched({"tmdb_id": 1, "title": "A"}, occurred_at="2099-01-01T00:00:00Z")}
        )
    soon = datetime.now(UTC) + MAX_CLOCK_SKEW - timedelta(seconds=30)
    assert decode_event(
        {"event": _fetched({"tmdb_id": 1, "title": "A"}, occurred_at=soon.isoformat())}
    )
    with pytest.raises(ValidationError, match="in the future"):
        MovieDeleted(source="x", tmdb_id=1, occurred_at=datetime.now(UTC) + timedelta(hours=1))


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_figures_must_be_finite_numbers(number):
    raw = _fetched({"tmdb_id": 1, "title": "A"}).replace(
        '"title": "A"', f'"title": "A", "popularity": {number}'
    )
    with pytest.raises(InvalidEventError, match=r"movie\.popularity"):
        decode_event({"event": raw})


def test_an_event_that_is_not_utf8_is_invalid_not_repaired():
    raw = _fetched({"tmdb_id": 1, "title": "Björk"}).encode().replace("ö".encode(), b"\xf6")
    with pytest.raises(InvalidEventError, match=r"not valid UTF-8: byte 0xf6 at byte \d+"):
        decode_event({b"event": raw})
    # As the embedder hands it over: decoded with U+FFFD, and the reader's note of why.
    text = raw.decode("utf-8", "replace")
    reason = utf8_problem(raw)
    assert reason
    with pytest.raises(InvalidEventError, match="not valid UTF-8: byte 0xf6"):
        decode_event({"event": text, UNREADABLE_FIELD: reason})
    assert decode_event({"event": raw.replace(b"\xf6", "ö".encode())})
    assert utf8_problem("Björk".encode()) is None


def test_images_are_optional_and_never_cause_a_re_embedding():
    plain = Movie(tmdb_id=1, title="A", overview="x")
    pictured = plain.model_copy(
        update={"poster_path": "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg", "backdrop_path": "/b.png"}
    )
    assert decode_event(encode_event(MovieFetched(source="t", movie=pictured))).movie == pictured  # type: ignore[union-attr]
    assert pictured.text_hash() == plain.text_hash()
    assert pictured.content_hash() != plain.content_hash()
