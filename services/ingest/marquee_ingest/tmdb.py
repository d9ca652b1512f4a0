"""Async TMDB v3 client: rate limited and retried; records are mapped to the catalog's ``Movie``
by ``tmdb_mapping``.

TMDB's limits are documented at https://developer.themoviedb.org/docs/rate-limiting (about 40
requests per second per IP); answers above them are HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeVar, get_args

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from marquee_ingest.ratelimit import TokenBucket
from marquee_ingest.records import InvalidRecord, Record, SkippedRecord
from marquee_ingest.tmdb_mapping import movie_from_tmdb
from marquee_shared.backoff import Backoff
from marquee_shared.events import Movie

if TYPE_CHECKING:
    from types import TracebackType

    from marquee_ingest.settings import IngestSettings

log = structlog.get_logger(__name__)

DEFAULT_BASE_URL = "https://api.themoviedb.org/3"
ListSource = Literal["popular", "discover", "top_rated"]
LIST_SOURCES: tuple[ListSource, ...] = get_args(ListSource)
MAX_LIST_PAGES = 500
"""TMDB answers 400 for ``page`` above 500 on every list endpoint."""
MAX_CHANGES_DAYS = 14
"""TMDB's /movie/changes serves at most 14 days per request."""
MAX_CHANGES_PAGES = 500
"""Pages of one changes window we are willing to read (100 ids each)."""
GONE_NOT_FOUND = "not found on TMDB (404)"
GONE_ADULT = "flagged adult on TMDB (not catalogued)"

T = TypeVar("T")

_LIST_ENDPOINTS: dict[ListSource, tuple[str, dict[str, str]]] = {
    "popular": ("/movie/popular", {}),
    "discover": (
        "/discover/movie",
        {"sort_by": "popularity.desc", "include_adult": "false", "include_video": "false"},
    ),
    "top_rated": ("/movie/top_rated", {}),
}


class TmdbError(Exception):
    """Base of every error this client raises."""


class TmdbConfigError(TmdbError):
    """The client cannot be built as configured (e.g. no credentials)."""


class TmdbAuthError(TmdbError):
    """TMDB refused the credentials (HTTP 401). Retrying cannot help."""


class TmdbRequestError(TmdbError):
    """TMDB refused one request (a 4xx other than 401/404/429), or answered nonsense."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TmdbUnavailableError(TmdbError):
    """TMDB could not be reached, or kept failing, after every retry."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), if valid."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# ---------------------------------------------------------------------------------------------
# The client


class _PageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")
    page: int
    results: list[_PageItem]
    total_pages: int


class _ChangeItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    # TMDB sends true/false, and null for some entries (e.g. movies deleted since).
    adult: bool | None = None


class _ChangesPage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    page: int
    results: list[_ChangeItem]
    total_pages: int


class ChangedMovie(NamedTuple):
    """One id from TMDB's changes list."""

    tmdb_id: int
    adult: bool
    """Flagged adult in the list itself: gone from our catalog without fetching it."""


@dataclass(frozen=True, slots=True)
class ChangeList:
    """What ``/movie/changes`` says changed between two dates (both included)."""

    start: date
    end: date
    movies: list[ChangedMovie]
    """Each id once, in the order TMDB listed them first; empty when not ``complete``."""
    total_pages: int
    complete: bool
    """False when the window has more than ``max_pages`` pages: only page 1 was read."""


class MovieGone(NamedTuple):
    """TMDB no longer has the movie for us: 404, or flagged adult."""

    tmdb_id: int
    reason: str


MovieState = Movie | InvalidRecord | MovieGone


def _status_message(response: httpx.Response) -> str:
    # TMDB errors look like {"success": false, "status_code": 7, "status_message": "..."}.
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("status_message"), str):
        return str(body["status_message"])
    return response.reason_phrase or f"HTTP {response.status_code}"


class TmdbClient:
    """TMDB v3 over one shared ``httpx.AsyncClient``.

    Pass an existing client (it stays yours to close), or use ``TmdbClient.from_settings`` as
    an async context manager, which creates one and closes it on exit.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str | None = None,
        read_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        rate_per_second: float = 20.0,
        max_retries: int = 5,
        timeout_seconds: float = 10.0,
        concurrency: int = 8,
        language: str = "en-US",
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        max_rate_limit_waits: int = 30,
        owns_http: bool = False,
    ) -> None:
        if not api_key and not read_token:
            raise TmdbConfigError("no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY")
        self._http = http
        self._owns_http = owns_http
        self._base_url = base_url.rstrip("/")
        # The bearer token is preferred when both are set: it keeps the secret out of URLs
        # (and so out of proxy and access logs).
        self._headers = {"Accept": "application/json"}
        self._auth_params: dict[str, str] = {}
        if read_token:
            self._headers["Authorization"] = f"Bearer {read_token}"
        else:
            assert api_key is not None
            self._auth_params["api_key"] = api_key
        self._limiter = TokenBucket(rate_per_second)
        self._max_retries = max_retries
        self._timeout = httpx.Timeout(timeout_seconds)
        self._concurrency = concurrency
        self._language = language
        self._retry_delays = Backoff(backoff_base, backoff_max, jitter=True)
        self._max_retry_after = max_retry_after
        self._max_rate_limit_waits = max_rate_limit_waits
        self.requests_sent = 0
        """HTTP requests sent so far, retries included (what a per-run cap counts)."""

    @classmethod
    def from_settings(
        cls, settings: IngestSettings, http: httpx.AsyncClient | None = None, **overrides: Any
    ) -> TmdbClient:
        """Build from settings; creates (and then owns) an HTTP client unless one is given."""
        api_key, token = settings.tmdb_api_key, settings.tmdb_read_token
        if api_key is None and token is None:
            # Checked before creating the HTTP client, so a failure leaves nothing to close.
            raise TmdbConfigError("no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY")
        owns = http is None
        if http is None:
            http = httpx.AsyncClient(
                headers={"User-Agent": "marquee-ingest/0.1"},
                limits=httpx.Limits(max_connections=settings.tmdb_concurrency * 2),
            )
        return cls(
            http,
            api_key=api_key.get_secret_value() if api_key else None,
            read_token=token.get_secret_value() if token else None,
            base_url=str(settings.tmdb_base_url),
            rate_per_second=settings.tmdb_rate_per_second,
            max_retries=settings.tmdb_max_retries,
            timeout_seconds=settings.tmdb_timeout_s,
            concurrency=settings.tmdb_concurrency,
            language=settings.tmdb_language,
            owns_http=owns,
            **overrides,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- public API ---------------------------------------------------------------------------

    async def list_movie_ids(self, source: ListSource, pages: int) -> list[int]:
        """Movie ids from the first ``pages`` pages of a TMDB list, deduplicated, in list order.

        Stops at the list's ``total_pages``. Ids can repeat across pages when the ranking moves
        while we read it; the first position wins.
        """
        if source not in _LIST_ENDPOINTS:
            raise ValueError(f"unknown list {source!r}; expected one of {LIST_SOURCES}")
        path, params = _LIST_ENDPOINTS[source]
        wanted = min(pages, MAX_LIST_PAGES)
        if wanted < 1:
            return []
        first = await self._list_page(path, params, 1)
        last = min(wanted, first.total_pages)
        rest = await self._pages(
            lambda page: self._list_page(path, params, page), range(2, last + 1)
        )
        ids: dict[int, None] = {}
        for result in [first, *rest]:
            for item in result.results:
                ids.setdefault(item.id, None)
        log.info(
            "tmdb_list_read",
            list=source,
            pages=last,
            total_pages=first.total_pages,
            movies=len(ids),
        )
        return list(ids)

    async def movie_changes(
        self, start: date, end: date, *, max_pages: int = MAX_CHANGES_PAGES
    ) -> ChangeList:
        """The movies TMDB changed from ``start`` to ``end`` (UTC dates, both included).

        Reads every page (100 ids each) unless the window has more than ``max_pages``: then
        only the first, and the result is not ``complete`` (ask for a shorter window).
        """
        if end < start:
            raise ValueError(f"the changes window ends ({end}) before it starts ({start})")
        if (end - start).days >= MAX_CHANGES_DAYS:
            raise ValueError(
                f"the changes window {start}..{end} is longer than TMDB's {MAX_CHANGES_DAYS} days"
            )
        params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        first = await self._changes_page(params, 1)
        if first.total_pages > max_pages:
            log.info(
                "tmdb_changes_too_many",
                start=str(start),
                end=str(end),
                total_pages=first.total_pages,
                max_pages=max_pages,
            )
            return ChangeList(start, end, [], first.total_pages, complete=False)
        rest = await self._pages(
            lambda page: self._changes_page(params, page), range(2, first.total_pages + 1)
        )
        movies: dict[int, ChangedMovie] = {}
        for page in [first, *rest]:
            for item in page.results:
                movies.setdefault(item.id, ChangedMovie(item.id, item.adult is True))
        log.info(
            "tmdb_changes_read",
            start=str(start),
            end=str(end),
            pages=first.total_pages,
            movies=len(movies),
        )
        return ChangeList(start, end, list(movies.values()), first.total_pages, complete=True)

    async def movie_details(self, tmdb_id: int) -> Movie | InvalidRecord | None:
        """One movie with credits and keywords; None when TMDB does not know the id (404)."""
        data = await self._details_json(tmdb_id)
        if data is None:
            return None
        where = f"tmdb:{tmdb_id}"
        if not isinstance(data, dict):
            return InvalidRecord(where, "response is not a JSON object")
        return movie_from_tmdb(data, where)

    async def movie_state(self, tmdb_id: int) -> MovieState:
        """The movie as TMDB has it now, for keeping a catalog in step.

        ``MovieGone`` when TMDB answers 404 or flags the movie adult (the catalog does not carry
        adult titles); ``InvalidRecord`` when the data is unusable or TMDB refuses this one
        request (a 4xx). Auth failures and TMDB being unavailable raise.
        """
        where = f"tmdb:{tmdb_id}"
        try:
            data = await self._details_json(tmdb_id)
        except TmdbRequestError as exc:
            return InvalidRecord(where, str(exc))
        if data is None:
            return MovieGone(tmdb_id, GONE_NOT_FOUND)
        if not isinstance(data, dict):
            return InvalidRecord(where, "response is not a JSON object")
        if data.get("adult") is True:
            return MovieGone(tmdb_id, GONE_ADULT)
        return movie_from_tmdb(data, where)

    def fetch_movies(self, ids: Iterable[int]) -> AsyncGenerator[Record]:
        """Details for many ids, ``concurrency`` in flight, yielded in the order of ``ids``.

        A movie TMDB refuses (a 4xx), no longer has (404) or flags adult is reported, not
        raised; auth failures and TMDB being unavailable end the iteration with the exception.
        Close the iterator (``aclosing``) when stopping early so in-flight requests are
        cancelled.
        """
        return self._in_order(ids, self._fetch_record)

    def fetch_states(self, ids: Iterable[int]) -> AsyncGenerator[MovieState]:
        """``movie_state`` for many ids, ``concurrency`` in flight, in the order of ``ids``."""
        return self._in_order(ids, self.movie_state)

    # -- internals ----------------------------------------------------------------------------

    async def _in_order(
        self, ids: Iterable[int], fetch: Callable[[int], Coroutine[Any, Any, T]]
    ) -> AsyncGenerator[T]:
        pending: deque[asyncio.Task[T]] = deque()
        try:
            for tmdb_id in ids:
                pending.append(asyncio.create_task(fetch(tmdb_id)))
                if len(pending) >= self._concurrency:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _pages(self, fetch: Callable[[int], Awaitable[T]], pages: Iterable[int]) -> list[T]:
        """Fetch pages concurrently (``concurrency`` at once); results in page order."""
        semaphore = asyncio.Semaphore(self._concurrency)

        async def bounded(page: int) -> T:
            async with semaphore:
                return await fetch(page)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(bounded(page)) for page in pages]
        except ExceptionGroup as failed:
            # The group cancelled the other pages; callers want the TmdbError, not a group.
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _details_json(self, tmdb_id: int) -> Any | None:
        return await self._get_json(f"/movie/{tmdb_id}", {"append_to_response": "credits,keywords"})

    async def _fetch_record(self, tmdb_id: int) -> Record:
        with structlog.contextvars.bound_contextvars(tmdb_id=tmdb_id):
            state = await self.movie_state(tmdb_id)
            if isinstance(state, MovieGone):
                log.info("tmdb_movie_gone", reason=state.reason)
                return SkippedRecord(f"tmdb:{tmdb_id}", state.reason)
            return state

    async def _changes_page(self, params: Mapping[str, str], page: int) -> _ChangesPage:
        path = "/movie/changes"
        data = await self._get_json(path, {**params, "page": str(page)})
        if data is None:
            raise TmdbRequestError(f"TMDB GET {path}: not found (404)", 404)
        try:
            return _ChangesPage.model_validate(data)
        except ValidationError as exc:
            raise TmdbRequestError(
                f"TMDB GET {path} page {page}: unexpected response: {exc}"
            ) from exc

    async def _list_page(self, path: str, params: Mapping[str, str], page: int) -> _Page:
        data = await self._get_json(path, {**params, "page": str(page)})
        if data is None:
            raise TmdbRequestError(f"TMDB GET {path}: not found (404)", 404)
        try:
            return _Page.model_validate(data)
        except ValidationError as exc:
            raise TmdbRequestError(
                f"TMDB GET {path} page {page}: unexpected response: {exc}"
            ) from exc

    def _backoff(self, attempt: int) -> float:
        # Equal jitter: concurrent requests that failed together do not retry together.
        return self._retry_delays.delay(attempt)

    async def _get_json(self, path: str, params: Mapping[str, str]) -> Any | None:  # noqa: PLR0912 - one loop is the retry policy
        """GET with retries; the decoded JSON, or None for 404."""
        url = self._base_url + path
        query = {**self._auth_params, "language": self._language, **params}
        attempt = 0
        rate_limit_waits = 0
        while True:
            await self._limiter.acquire()
            self.requests_sent += 1
            try:
                response = await self._http.get(
                    url, params=query, headers=self._headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:  # connect errors, timeouts, dropped connections
                failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        # A truncated body from a proxy or an overloaded edge: worth a retry.
                        failure = "HTTP 200 with a body that is not JSON"
                        delay = self._backoff(attempt)
                elif status == 404:
                    return None
                elif status == 401:
                    raise TmdbAuthError(
                        f"TMDB refused the credentials (401): {_status_message(response)}"
                    )
                elif status == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    delay = self._backoff(attempt) if retry_after is None else retry_after
                    if delay > self._max_retry_after:
                        raise TmdbUnavailableError(
                            f"TMDB GET {path}: rate limited for {delay:.0f}s (Retry-After), "
                            f"longer than the {self._max_retry_after:.0f}s we wait"
                        )
                    self._limiter.hold(delay)
                    failure = "HTTP 429 (rate limited)"
                    if retry_after is not None and rate_limit_waits < self._max_rate_limit_waits:
                        # TMDB said how long to wait: waiting is the protocol working, not a
                        # failure, so these waits have their own (larger) budget instead of
                        # using up the retries meant for errors. A 429 storm slows a sync down
                        # without failing it.
                        rate_limit_waits += 1
                        log.info("tmdb_rate_limited", path=path, delay_s=round(delay, 3))
                        await asyncio.sleep(delay)
                        continue
                elif status >= 500:
                    failure = f"HTTP {status} ({_status_message(response)})"
                    delay = self._backoff(attempt)
                else:
                    raise TmdbRequestError(
                        f"TMDB GET {path}: HTTP {status} ({_status_message(response)})", status
                    )
            if attempt >= self._max_retries:
                raise TmdbUnavailableError(
                    f"TMDB GET {path} failed after {attempt + 1} attempts; last: {failure}"
                )
            attempt += 1
            log.warning(
                "tmdb_retry", path=path, attempt=attempt, delay_s=round(delay, 3), reason=failure
            )
            await asyncio.sleep(delay)
