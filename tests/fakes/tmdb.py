"""A fake TMDB v3 API speaking TMDB's JSON shapes, for tests of real HTTP clients.

    with FakeTmdb() as tmdb:                       # serves on 127.0.0.1:<free port>
        tmdb.add_movie(tmdb_movie(603, "The Matrix"))
        tmdb.set_list("popular", [603, 604])
        tmdb.fail_next(2, status=503)              # scripted faults, consumed in order
        tmdb.change_movie(603, overview="New.")    # edit, and list it in /movie/changes today
        tmdb.remove_movie(604)                     # 404 from now on, listed as changed
        client.get(f"{tmdb.url}/movie/603", params={"api_key": tmdb.api_key})
        tmdb.requests                              # what arrived, with arrival times

Endpoints: ``/movie/popular``, ``/movie/top_rated``, ``/discover/movie`` (``page``,
``results``, ``total_pages``, ``total_results``; 20 per page, pages above 500 refused like TMDB
does), ``/movie/{id}`` (``append_to_response=credits,keywords`` honoured) and
``/movie/changes`` (``start_date``/``end_date`` as YYYY-MM-DD, both included, at most 14 days,
default the last day; 100 ids per page as ``{"id", "adult"}``). Auth is the ``api_key`` query
parameter or an ``Authorization: Bearer`` token; anything else gets TMDB's 401.

The server runs uvicorn in a background thread with its own event loop, so the client under
test (in the test's loop) and the server never wait on each other: timings measured here are
the client's.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from starlette.requests import Request

PAGE_SIZE = 20
MAX_PAGE = 500
CHANGES_PAGE_SIZE = 100
MAX_CHANGES_DAYS = 14
LISTS = ("popular", "top_rated", "discover")
_LIST_PATHS = {
    "/movie/popular": "popular",
    "/movie/top_rated": "top_rated",
    "/discover/movie": "discover",
}

NOT_FOUND = {
    "success": False,
    "status_code": 34,
    "status_message": "The resource you requested could not be found.",
}
INVALID_KEY = {
    "status_code": 7,
    "status_message": "Invalid API key: You must be granted a valid key.",
    "success": False,
}
INVALID_DATE_RANGE = {
    "success": False,
    "status_code": 47,
    "status_message": "The input is not valid.",
}
RATE_LIMITED = {
    "status_code": 25,
    "status_message": "Your request count (41) is over the allowed limit of 40.",
    "success": False,
}


def tmdb_movie(tmdb_id: int, title: str, **overrides: Any) -> dict[str, Any]:
    """A ``/movie/{id}?append_to_response=credits,keywords`` body as TMDB sends it.

    ``overrides`` replace top-level keys; pass ``credits=`` / ``keywords=`` to replace those.
    Use ``drop=("title",)`` to leave keys out entirely (a malformed record).
    """
    drop = overrides.pop("drop", ())
    body: dict[str, Any] = {
        "adult": False,
        "backdrop_path": f"/backdrop{tmdb_id}.jpg",
        "belongs_to_collection": None,
        "budget": 63000000,
        "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}],
        "homepage": "",
        "id": tmdb_id,
        "imdb_id": f"tt{tmdb_id:07d}",
        "origin_country": ["US"],
        "original_language": "en",
        "original_title": title,
        "overview": f"The story of {title}.",
        "popularity": 12.5,
        "poster_path": f"/poster{tmdb_id}.jpg",
        "production_companies": [],
        "production_countries": [{"iso_3166_1": "US", "name": "United States of America"}],
        "release_date": "1999-03-30",
        "revenue": 463517383,
        "runtime": 136,
        "spoken_languages": [{"english_name": "English", "iso_639_1": "en", "name": "English"}],
        "status": "Released",
        "tagline": "Welcome to the Real World.",
        "title": title,
        "video": False,
        "vote_average": 8.2,
        "vote_count": 26000,
        "credits": {
            "cast": [
                _cast(6384, "Keanu Reeves", "Neo", 0),
                _cast(2975, "Laurence Fishburne", "Morpheus", 1),
                _cast(530, "Carrie-Anne Moss", "Trinity", 2),
            ],
            "crew": [
                _crew(9339, "Lilly Wachowski", "Directing", "Director"),
                _crew(9340, "Lana Wachowski", "Directing", "Director"),
                _crew(1091, "Joel Silver", "Production", "Producer"),
            ],
        },
        "keywords": {
            "keywords": [
                {"id": 83, "name": "saving the world"},
                {"id": 310, "name": "artificial intelligence"},
            ]
        },
    }
    body.update(overrides)
    for key in drop:
        body.pop(key, None)
    return body


def _cast(person_id: int, name: str, character: str, order: int) -> dict[str, Any]:
    return {
        "adult": False,
        "gender": 2,
        "id": person_id,
        "known_for_department": "Acting",
        "name": name,
        "original_name": name,
        "popularity": 20.0,
        "profile_path": None,
        "cast_id": order + 10,
        "character": character,
        "credit_id": f"c{person_id}",
        "order": order,
    }


def _crew(person_id: int, name: str, department: str, job: str) -> dict[str, Any]:
    return {
        "adult": False,
        "gender": 1,
        "id": person_id,
        "known_for_department": department,
        "name": name,
        "original_name": name,
        "popularity": 5.0,
        "profile_path": None,
        "credit_id": f"k{person_id}{job}",
        "department": department,
        "job": job,
    }


def _list_item(movie: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "adult",
        "backdrop_path",
        "id",
        "original_language",
        "original_title",
        "overview",
        "popularity",
        "poster_path",
        "release_date",
        "title",
        "video",
        "vote_average",
        "vote_count",
    )
    item = {k: movie.get(k) for k in keys}
    item["genre_ids"] = [g.get("id") for g in movie.get("genres") or [] if isinstance(g, dict)]
    return item


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    """Path below the API root, e.g. ``/movie/603``."""
    params: dict[str, str]
    headers: dict[str, str]
    """Lower-case header names."""
    at: float
    """``time.monotonic()`` on arrival."""
    status: int


@dataclass
class _Fault:
    status: int
    remaining: int
    path: str | None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    """Only requests with these query parameters match (e.g. ``{"page": "2"}``)."""
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to stall before answering; with ``status`` 0 the answer is then the normal one."""


class FakeTmdb:
    """The fake API. Use as a context manager; ``url`` is the API root (like ``.../3``)."""

    def __init__(
        self,
        movies: Iterable[Mapping[str, Any]] = (),
        *,
        api_key: str = "test-api-key",
        read_token: str = "test-read-token",
    ) -> None:
        self.api_key = api_key
        self.read_token = read_token
        self._initial = [dict(m) for m in movies]
        self._lock = threading.Lock()
        self.movies: dict[int, dict[str, Any]] = {}
        self.lists: dict[str, list[int]] = {}
        self.changes: list[tuple[int, date]] = []
        """The change log /movie/changes serves: (tmdb_id, UTC day), oldest first."""
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self.reset()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- scripting ------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the movies given at construction, every list = all of them; no faults."""
        with self._lock:
            self.movies = {int(m["id"]): dict(m) for m in self._initial}
            self.lists = {name: list(self.movies) for name in LISTS}
            self.changes = []
            self.requests = []
            self._faults = []

    def add_movie(
        self,
        movie: Mapping[str, Any],
        *,
        listed: bool = False,
        changed: bool = False,
        on: date | None = None,
    ) -> None:
        """Add (or replace) a movie; ``changed`` also lists it in /movie/changes ``on`` a day."""
        with self._lock:
            self.movies[int(movie["id"])] = dict(movie)
            if listed:
                for ids in self.lists.values():
                    ids.append(int(movie["id"]))
            if changed:
                self.changes.append((int(movie["id"]), on or utc_today()))

    def change_movie(self, tmdb_id: int, *, on: date | None = None, **fields: Any) -> None:
        """Edit top-level fields of a movie (e.g. ``overview=``) and list it as changed."""
        with self._lock:
            self.movies[tmdb_id].update(fields)
            self.changes.append((tmdb_id, on or utc_today()))

    def remove_movie(self, tmdb_id: int, *, on: date | None = None) -> None:
        """TMDB deleted the movie: 404 from now on, gone from the lists, listed as changed."""
        with self._lock:
            self.movies.pop(tmdb_id, None)
            for ids in self.lists.values():
                while tmdb_id in ids:
                    ids.remove(tmdb_id)
            self.changes.append((tmdb_id, on or utc_today()))

    def record_change(self, tmdb_id: int, *, on: date | None = None) -> None:
        """List a movie in /movie/changes without changing it (TMDB lists edits to fields we
        do not read, like posters, too)."""
        with self._lock:
            self.changes.append((tmdb_id, on or utc_today()))

    def set_list(self, name: str, ids: Iterable[int]) -> None:
        """The ids a list returns, in order (ids without a movie are listed anyway)."""
        if name not in LISTS:
            raise ValueError(f"unknown list {name!r}")
        with self._lock:
            self.lists[name] = list(ids)

    def fail_next(
        self,
        times: int,
        status: int = 503,
        *,
        path: str | None = None,
        params: Mapping[str, str] | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """The next ``times`` requests (to ``path`` with ``params`` only, if given) get ``status``.

        Faults queue up in the order scripted; a request consumes the first that matches.
        """
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        body = (
            RATE_LIMITED
            if status == 429
            else {"success": False, "status_code": 11, "status_message": "Internal error."}
        )
        with self._lock:
            self._faults.append(
                _Fault(status, times, path, headers, dict(params or {}), dict(body))
            )

    def rate_limit_next(self, times: int, retry_after: float | str | None = 1) -> None:
        self.fail_next(times, 429, retry_after=retry_after)

    def stall_next(self, times: int, seconds: float, *, path: str | None = None) -> None:
        """The next ``times`` requests wait ``seconds`` before the normal answer (timeouts)."""
        with self._lock:
            self._faults.append(_Fault(0, times, path, delay=seconds))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- serving --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeTmdb is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._port}/3"

    def __enter__(self) -> Self:
        # A socket bound here and handed to uvicorn: no race for a "free" port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/3/{path:path}", self._handle, methods=["GET"])])
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),  # type: ignore[union-attr]
            name="fake-tmdb",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake TMDB server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._port = 0

    # -- the API --------------------------------------------------------------------------

    async def _handle(self, request: Request) -> JSONResponse:
        path = "/" + request.path_params["path"]
        params = dict(request.query_params)
        headers = {k.lower(): v for k, v in request.headers.items()}
        arrived = time.monotonic()
        if not self._authorized(params, headers):
            response = JSONResponse(INVALID_KEY, status_code=401)
        else:
            fault = self._take_fault(path, params)
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.status:
                response = JSONResponse(fault.body, fault.status, headers=fault.headers)
            else:
                response = self._respond(path, params)
        with self._lock:
            self.requests.append(
                RecordedRequest(path, params, headers, arrived, response.status_code)
            )
        return response

    def _take_fault(self, path: str, params: dict[str, str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                matches = fault.path in (None, path) and fault.params.items() <= params.items()
                if fault.remaining > 0 and matches:
                    fault.remaining -= 1
                    return fault
        return None

    def _respond(self, path: str, params: dict[str, str]) -> JSONResponse:
        with self._lock:
            if path in _LIST_PATHS:
                return self._list_page(self.lists[_LIST_PATHS[path]], params)
            if path == "/movie/changes":
                return self._changes_page(params)
            if path.startswith("/movie/") and path.removeprefix("/movie/").isdigit():
                return self._details(int(path.removeprefix("/movie/")), params)
        return JSONResponse(NOT_FOUND, status_code=404)

    def _authorized(self, params: dict[str, str], headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        if bearer:
            return bearer == f"Bearer {self.read_token}"
        return params.get("api_key") == self.api_key

    def _list_page(self, ids: list[int], params: dict[str, str]) -> JSONResponse:
        try:
            page = int(params.get("page", "1"))
        except ValueError:
            page = 0
        if not 1 <= page <= MAX_PAGE:
            return JSONResponse(
                {
                    "success": False,
                    "status_code": 22,
                    "status_message": "Invalid page: Pages "
                    "start at 1 and max at 500. They are expected to be an integer.",
                },
                status_code=400,
            )
        chunk = ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        results = [_list_item(self.movies.get(i, {"id": i, "title": f"Movie {i}"})) for i in chunk]
        return JSONResponse(
            {
                "page": page,
                "results": results,
                "total_pages": max(1, math.ceil(len(ids) / PAGE_SIZE)),
                "total_results": len(ids),
            }
        )

    def _changes_page(self, params: dict[str, str]) -> JSONResponse:
        today = utc_today()
        try:
            end = date.fromisoformat(params["end_date"]) if "end_date" in params else today
            start = (
                date.fromisoformat(params["start_date"])
                if "start_date" in params
                else end - timedelta(days=1)
            )
            page = int(params.get("page", "1"))
        except ValueError:
            return JSONResponse(INVALID_DATE_RANGE, status_code=422)
        if start > end or (end - start).days >= MAX_CHANGES_DAYS or not 1 <= page <= MAX_PAGE:
            return JSONResponse(INVALID_DATE_RANGE, status_code=422)
        ids: dict[int, None] = {}
        for tmdb_id, day in reversed(self.changes):  # most recent first, like TMDB
            if start <= day <= end:
                ids.setdefault(tmdb_id, None)
        listed = list(ids)
        chunk = listed[(page - 1) * CHANGES_PAGE_SIZE : page * CHANGES_PAGE_SIZE]
        results = [
            {"id": i, "adult": bool(self.movies.get(i, {}).get("adult", False))} for i in chunk
        ]
        return JSONResponse(
            {
                "results": results,
                "page": page,
                "total_pages": max(1, math.ceil(len(listed) / CHANGES_PAGE_SIZE)),
                "total_results": len(listed),
            }
        )

    def _details(self, tmdb_id: int, params: dict[str, str]) -> JSONResponse:
        movie = self.movies.get(tmdb_id)
        if movie is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        appended = set(params.get("append_to_response", "").split(","))
        body = {k: v for k, v in movie.items() if k not in {"credits", "keywords"} or k in appended}
        return JSONResponse(body)


def utc_today() -> date:
    """Today in UTC: the day TMDB files a change under."""
    return datetime.now(UTC).date()
