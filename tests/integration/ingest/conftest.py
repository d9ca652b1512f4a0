"""Fixtures for the ingest service: the fake TMDB server, clients on it, settings on Redis.

``redis_url`` / ``redis`` (a real redis-server, flushed per test) come from tests/conftest.py.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from marquee_ingest.settings import IngestSettings
from marquee_ingest.tmdb import TmdbClient
from tests.fakes.tmdb import FakeTmdb, tmdb_movie

MATRIX = tmdb_movie(603, "The Matrix")
# 45 listed movies: three list pages of 20, 20 and 5.
CATALOG = [MATRIX, *(tmdb_movie(1000 + i, f"Movie {i}") for i in range(1, 45))]


@pytest.fixture(scope="session")
def fake_tmdb_server() -> Iterator[FakeTmdb]:
    with FakeTmdb(CATALOG) as server:
        yield server


@pytest.fixture
def fake_tmdb(fake_tmdb_server: FakeTmdb) -> FakeTmdb:
    """The session's fake TMDB, back to its initial catalog with no faults and no requests."""
    fake_tmdb_server.reset()
    return fake_tmdb_server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def make_tmdb(fake_tmdb: FakeTmdb, http: httpx.AsyncClient) -> Callable[..., TmdbClient]:
    """A real TmdbClient on the fake: fast by default (high rate, millisecond backoff)."""

    def make(**overrides: Any) -> TmdbClient:
        options: dict[str, Any] = {
            "api_key": fake_tmdb.api_key,
            "base_url": fake_tmdb.url,
            "rate_per_second": 1000.0,
            "backoff_base": 0.01,
            "max_retries": 3,
            "timeout_seconds": 5.0,
        }
        options.update(overrides)
        return TmdbClient(http, **options)

    return make


@pytest.fixture
def settings(redis_url: str, fake_tmdb: FakeTmdb) -> IngestSettings:
    return IngestSettings(
        redis_url=redis_url,
        tmdb_api_key=fake_tmdb.api_key,
        tmdb_base_url=fake_tmdb.url,
        tmdb_rate_per_second=1000,
        publish_batch_size=500,
    )


@pytest.fixture
def unused_redis_url() -> str:
    """A Redis URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
