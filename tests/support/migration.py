"""Shared by the model-migration tests: a small catalog of distinct movies, events for it,
embedder settings with fast migration loops, and the ``migrate`` CLI run in a thread."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from marquee_embedder import cli
from marquee_embedder.settings import EmbedderSettings
from marquee_shared.events import Movie, MovieDeleted, MovieFetched

if TYPE_CHECKING:
    import pytest

WORDS = ["shark", "robot", "ghost", "heist", "dragon", "spy", "storm", "circus", "pirate", "moon"]
MOVIES = [
    Movie(
        tmdb_id=1000 + i,
        title=f"Film {i}",
        year=1960 + i,
        overview=f"A tale of a {WORDS[i % 10]} and a {WORDS[(i * 3) % 10]}, chapter {i}.",
        genres=["Drama"],
        vote_count=10 * i,
    )
    for i in range(48)
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fetched(movie: Movie, minutes: int = 0) -> MovieFetched:
    return MovieFetched(source="test", movie=movie, occurred_at=T0 + timedelta(minutes=minutes))


def deleted(tmdb_id: int, minutes: int) -> MovieDeleted:
    return MovieDeleted(source="test", tmdb_id=tmdb_id, occurred_at=T0 + timedelta(minutes=minutes))


def settings_for(redis_url: str, chroma_url: str, collection: str, **kw: Any) -> EmbedderSettings:
    return EmbedderSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection,
        batch_size=16,
        poll_ms=100,
        log_format="json",
        migration_batch_size=8,
        migration_rate=0,
        migration_verify_interval_s=0.5,
        migration_poll_s=0.1,
        **kw,
    )


async def migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli.main, ["migrate", *args])
    out, err = capsys.readouterr()
    return code, out, err
