"""The real TMDB client over HTTP against the fake TMDB server."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from marquee_ingest.records import InvalidRecord, SkippedRecord
from marquee_ingest.tmdb import (
    GONE_ADULT,
    GONE_NOT_FOUND,
    ChangedMovie,
    MovieGone,
    TmdbAuthError,
    TmdbClient,
    TmdbRequestError,
    TmdbUnavailableError,
)
from marquee_shared.events import Movie
from tests.fakes.tmdb import FakeTmdb, tmdb_movie, utc_today

pytestmark = pytest.mark.integration

MakeTmdb = Callable[..., TmdbClient]


# -- lists ------------------------------------------------------------------------------------


async def test_list_pages_until_total_pages(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb) -> None:
    ids = await make_tmdb().list_movie_ids("popular", pages=10)

    assert ids == [603, *range(1001, 1045)]
    pages = sorted(int(r.params["page"]) for r in fake_tmdb.requests_to("/movie/popular"))
    assert pages == [1, 2, 3]  # total_pages is 3: never asked for page 4


async def test_list_reads_only_the_pages_asked_for(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    ids = await make_tmdb().list_movie_ids("top_rated", pages=2)

    assert len(ids) == 40
    assert len(fake_tmdb.requests_to("/movie/top_rated")) == 2


async def test_discover_asks_for_popular_non_adult_movies(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    await make_tmdb().list_movie_ids("discover", pages=1)

    (request,) = fake_tmdb.requests_to("/discover/movie")
    assert request.params["sort_by"] == "popularity.desc"
    assert request.params["include_adult"] == "false"
    assert request.params["page"] == "1"
    assert request.params["language"] == "en-US"


async def test_list_ids_repeated_across_pages_appear_once(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    # The ranking moved while paging: 1005 shows up on page 1 and again on page 2.
    fake_tmdb.set_list("popular", [*range(1001, 1021), 1005, 1021])

    ids = await make_tmdb().list_movie_ids("popular", pages=5)

    assert ids == [*range(1001, 1022)]


async def test_a_failing_page_raises_the_tmdb_error(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.fail_next(10, 503, path="/movie/popular", params={"page": "2"})

    with pytest.raises(TmdbUnavailableError, match=r"/movie/popular failed after 2 attempts"):
        await make_tmdb(max_retries=1).list_movie_ids("popular", pages=3)


# -- details ----------------------------------------------------------------------------------


async def test_details_map_credits_and_keywords(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb) -> None:
    cast = [
        {"name": name, "order": order, "character": "x"}
        for name, order in [("F", 5), ("B", 1), ("A", 0), ("G", 6), ("D", 3), ("C", 2), ("E", 4)]
    ]
    fake_tmdb.add_movie(
        tmdb_movie(
            550,
            "Fight Club",
            release_date="1999-10-15",
            tagline="",
            credits={
                "cast": cast,
                "crew": [
                    {"name": "David Fincher", "job": "Director", "department": "Directing"},
                    {"name": "Jim Uhls", "job": "Screenplay", "department": "Writing"},
                ],
            },
            keywords={"keywords": [{"id": 1, "name": "dual identity"}]},
        )
    )

    movie = await make_tmdb().movie_details(550)

    assert isinstance(movie, Movie)
    assert movie.title == "Fight Club"
    assert movie.directors == ["David Fincher"]
    assert movie.cast == ["A", "B", "C", "D", "E"]  # billing order, top five
    assert movie.keywords == ["dual identity"]
    assert movie.genres == ["Action", "Science Fiction"]
    assert movie.year == 1999
    assert movie.tagline is None
    (request,) = fake_tmdb.requests_to("/movie/550")
    assert request.params["append_to_response"] == "credits,keywords"


async def test_unknown_movie_is_none(make_tmdb: MakeTmdb) -> None:
    assert await make_tmdb().movie_details(999_999) is None


@pytest.mark.parametrize(
    ("movie", "reason"),
    [
        (tmdb_movie(77, "x", drop=("title",)), "title: Field required"),
        (tmdb_movie(77, "Too Good", vote_average=42), "vote_average: Input should be less"),
    ],
)
async def test_malformed_movie_is_reported_not_raised(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb, movie: dict[str, object], reason: str
) -> None:
    fake_tmdb.add_movie(movie)

    result = await make_tmdb().movie_details(77)

    assert isinstance(result, InvalidRecord)
    assert result.where == "tmdb:77"
    assert reason in result.reason


async def test_fetch_movies_keeps_order_and_reports_each_kind(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.add_movie(tmdb_movie(77, "Broken", vote_average=42))
    ids = [603, 999_999, 77, *range(1001, 1011)]

    results = [r async for r in make_tmdb(concurrency=4).fetch_movies(ids)]

    assert isinstance(results[0], Movie)
    assert results[0].tmdb_id == 603
    assert results[1] == SkippedRecord("tmdb:999999", "not found on TMDB (404)")
    assert isinstance(results[2], InvalidRecord)
    assert [r.tmdb_id for r in results[3:] if isinstance(r, Movie)] == list(range(1001, 1011))


# -- retries ----------------------------------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.rate_limit_next(1, retry_after=1)
    started = time.monotonic()

    movie = await make_tmdb().movie_details(603)

    assert isinstance(movie, Movie)
    assert time.monotonic() - started >= 1.0
    first, second = fake_tmdb.requests_to("/movie/603")
    assert first.status == 429
    assert second.status == 200
    assert second.at - first.at >= 1.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb, status: int) -> None:
    fake_tmdb.fail_next(2, status)

    movie = await make_tmdb().movie_details(603)

    assert isinstance(movie, Movie)
    assert [r.status for r in fake_tmdb.requests_to("/movie/603")] == [status, status, 200]


async def test_retries_exhausted_raise_a_clear_error(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.fail_next(10, 503)

    with pytest.raises(TmdbUnavailableError, match=r"/movie/603 failed after 3 attempts.*503"):
        await make_tmdb(max_retries=2).movie_details(603)
    assert len(fake_tmdb.requests_to("/movie/603")) == 3


async def test_timeouts_are_retried_then_raised(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb) -> None:
    fake_tmdb.stall_next(1, 1.0)
    client = make_tmdb(timeout_seconds=0.2)

    assert isinstance(await client.movie_details(603), Movie)  # the retry is not stalled

    fake_tmdb.stall_next(5, 1.0)
    with pytest.raises(TmdbUnavailableError, match="ReadTimeout"):
        await make_tmdb(timeout_seconds=0.2, max_retries=1).movie_details(603)


async def test_unreachable_tmdb_raises_after_retries(http: httpx.AsyncClient) -> None:
    with FakeTmdb() as gone:
        url = gone.url  # a port that is closed once the server has stopped
    client = TmdbClient(http, api_key="k", base_url=url, max_retries=1, backoff_base=0.01)

    with pytest.raises(TmdbUnavailableError, match=r"failed after 2 attempts.*ConnectError"):
        await client.movie_details(603)


async def test_other_4xx_is_a_request_error(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb) -> None:
    fake_tmdb.fail_next(1, 422)

    with pytest.raises(TmdbRequestError) as caught:
        await make_tmdb().movie_details(603)
    assert caught.value.status_code == 422


# -- rate limit -------------------------------------------------------------------------------


async def test_rate_limit_holds_across_concurrent_requests(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    client = make_tmdb(rate_per_second=10.0, concurrency=8)
    started = time.monotonic()

    results = [r async for r in client.fetch_movies(range(1001, 1021))]

    elapsed = time.monotonic() - started
    assert len(results) == 20
    assert elapsed >= 1.8  # 20 requests at 10/s: the first at once, then one every 0.1s
    arrivals = sorted(r.at for r in fake_tmdb.requests)
    assert arrivals[-1] - arrivals[0] >= 1.8
    # No window of one second ever saw more than the rate (+1 for the window's edges).
    assert all(sum(1 for t in arrivals if start <= t < start + 1.0) <= 11 for start in arrivals)


async def test_429_pauses_every_request_not_just_the_refused_one(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.rate_limit_next(1, retry_after=0.5)
    client = make_tmdb(rate_per_second=100.0, concurrency=1)

    results = [r async for r in client.fetch_movies([1001, 1002])]

    assert all(isinstance(r, Movie) for r in results)
    refused, *rest = fake_tmdb.requests
    assert refused.status == 429
    assert all(r.at - refused.at >= 0.5 for r in rest)


# -- auth -------------------------------------------------------------------------------------


async def test_api_key_goes_in_the_query(fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb) -> None:
    await make_tmdb().movie_details(603)

    (request,) = fake_tmdb.requests
    assert request.params["api_key"] == fake_tmdb.api_key
    assert "authorization" not in request.headers


async def test_read_token_goes_in_the_bearer_header(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    # Both set: the token wins, so the key never appears in a URL.
    await make_tmdb(read_token=fake_tmdb.read_token).movie_details(603)

    (request,) = fake_tmdb.requests
    assert request.headers["authorization"] == f"Bearer {fake_tmdb.read_token}"
    assert "api_key" not in request.params
    assert request.status == 200


@pytest.mark.parametrize(
    "credentials", [{"api_key": "wrong"}, {"api_key": None, "read_token": "wrong"}]
)
async def test_wrong_credentials_raise_auth_error(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb, credentials: dict[str, str | None]
) -> None:
    with pytest.raises(TmdbAuthError, match="Invalid API key"):
        await make_tmdb(**credentials).list_movie_ids("popular", 1)
    assert len(fake_tmdb.requests) == 1  # never retried


# -- keeping a catalog in step ----------------------------------------------------------------


async def test_movie_state_says_gone_for_404_and_adult(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.add_movie(tmdb_movie(77, "Adults Only", adult=True))
    client = make_tmdb()

    assert await client.movie_state(999_999) == MovieGone(999_999, GONE_NOT_FOUND)
    assert await client.movie_state(77) == MovieGone(77, GONE_ADULT)
    assert isinstance(await client.movie_state(603), Movie)
    # The one-shot fetch reports both as skipped, never publishes them.
    results = [r async for r in client.fetch_movies([77, 999_999])]
    assert results == [
        SkippedRecord("tmdb:77", GONE_ADULT),
        SkippedRecord("tmdb:999999", GONE_NOT_FOUND),
    ]


async def test_changes_read_every_page_each_id_once(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    today = utc_today()
    for tmdb_id in range(1001, 1045):
        fake_tmdb.record_change(tmdb_id)
    for i in range(120):
        fake_tmdb.record_change(500_000 + i, on=today - timedelta(days=3))
    fake_tmdb.record_change(1001, on=today - timedelta(days=1))  # twice in the window
    fake_tmdb.change_movie(1002, adult=True)

    changes = await make_tmdb().movie_changes(today - timedelta(days=3), today)

    assert changes.complete
    assert changes.total_pages == 2  # 164 distinct ids, 100 a page
    ids = [m.tmdb_id for m in changes.movies]
    assert len(ids) == len(set(ids)) == 164
    assert [m for m in changes.movies if m.adult] == [ChangedMovie(1002, adult=True)]
    pages = sorted(r.params["page"] for r in fake_tmdb.requests_to("/movie/changes"))
    assert pages == ["1", "2"]
    (first, _) = fake_tmdb.requests_to("/movie/changes")
    assert first.params["start_date"] == (today - timedelta(days=3)).isoformat()
    assert first.params["end_date"] == today.isoformat()


async def test_changes_with_too_many_pages_read_only_the_first(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    for i in range(250):
        fake_tmdb.record_change(500_000 + i)

    changes = await make_tmdb().movie_changes(utc_today(), utc_today(), max_pages=2)

    assert not changes.complete
    assert (changes.total_pages, changes.movies) == (3, [])
    assert len(fake_tmdb.requests_to("/movie/changes")) == 1


async def test_changes_windows_tmdb_would_refuse_are_not_sent(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    today = utc_today()
    client = make_tmdb()

    with pytest.raises(ValueError, match="longer than TMDB's 14 days"):
        await client.movie_changes(today - timedelta(days=14), today)
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        await client.movie_changes(today, today - timedelta(days=1))
    assert fake_tmdb.requests == []
    # 14 days, both ends included, is what TMDB allows.
    assert (await client.movie_changes(today - timedelta(days=13), today)).complete


async def test_429_waits_do_not_use_up_the_error_retries(
    fake_tmdb: FakeTmdb, make_tmdb: MakeTmdb
) -> None:
    fake_tmdb.rate_limit_next(4, retry_after=0.05)
    client = make_tmdb(max_retries=1)

    assert isinstance(await client.movie_details(603), Movie)
    assert [r.status for r in fake_tmdb.requests] == [429, 429, 429, 429, 200]
    assert client.requests_sent == 5

    # Without a Retry-After a 429 is an error like any other: the retries run out.
    fake_tmdb.rate_limit_next(4, retry_after=None)
    with pytest.raises(TmdbUnavailableError, match="429"):
        await client.movie_details(603)
