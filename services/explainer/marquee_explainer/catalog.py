"""Reading movie records from the Chroma collection the embedder writes (by id only: the
explainer never runs a vector search, it compares the stored vectors of the movies it is given).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
import structlog

from marquee_explainer.titles import TitleIndex
from marquee_shared.events import Movie
from marquee_shared.index import movie_from_metadata, record_id

if TYPE_CHECKING:
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from numpy.typing import NDArray

log = structlog.get_logger(__name__)

PAGE_SIZE = 1000
"""Records per page when reading the whole collection (for the title index)."""


class NoKnownTasteError(LookupError):
    def __init__(self, ids: Sequence[int]) -> None:
        shown = ", ".join(str(i) for i in ids[:10]) + (" ..." if len(ids) > 10 else "")
        super().__init__(f"none of the liked movies is in the catalog ({shown})")


@dataclass(frozen=True, slots=True)
class MovieRecord:
    movie: Movie
    content_hash: str
    vector: NDArray[np.float32]

    @property
    def tmdb_id(self) -> int:
        return self.movie.tmdb_id


class Catalog:
    def __init__(self, collection: AsyncCollection) -> None:
        self._collection = collection

    def use(self, collection: AsyncCollection) -> None:
        """Read another collection from now on (the index alias moved); one assignment, so a
        request reads the old one or the new one, whole."""
        self._collection = collection

    async def records(self, tmdb_ids: Iterable[int]) -> dict[int, MovieRecord]:
        """The stored records of those movies that are in the index (one round trip)."""
        ids = [record_id(i) for i in dict.fromkeys(tmdb_ids)]
        if not ids:
            return {}
        got = await self._collection.get(ids=ids, include=["embeddings", "metadatas"])
        embeddings = got["embeddings"]
        metadatas = got["metadatas"] or []
        found: dict[int, MovieRecord] = {}
        for i, metadata in enumerate(metadatas):
            record = _record(metadata, None if embeddings is None else embeddings[i])
            if record is not None:
                found[record.tmdb_id] = record
        return found

    async def all_metadata(self) -> AsyncIterator[Mapping[str, Any]]:
        """Every record's metadata, page by page (no vectors: they are most of the bytes)."""
        offset = 0
        while True:
            got = await self._collection.get(include=["metadatas"], limit=PAGE_SIZE, offset=offset)
            page = got["metadatas"] or []
            for metadata in page:
                yield metadata
            if len(page) < PAGE_SIZE:
                return
            offset += PAGE_SIZE

    async def heartbeat(self) -> int:
        return await self._collection.count()


def _record(metadata: Mapping[str, Any], vector: Any) -> MovieRecord | None:
    try:
        movie = movie_from_metadata(metadata)
    except ValueError as exc:
        # A record another writer left in the collection: not ours to explain, not fatal.
        log.warning("unreadable_record", error=str(exc)[:200])
        return None
    array = np.asarray(vector if vector is not None else [], dtype=np.float32)
    return MovieRecord(movie, str(metadata.get("content_hash", "")), array)


def cosine(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """Cosine similarity; 0 when either vector is missing (the record has no embedding)."""
    if a.size == 0 or b.size == 0 or a.shape != b.shape:
        return 0.0
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if norm == 0.0 else float(np.dot(a, b)) / norm


class CatalogTitles:
    """The title index of the whole catalog, rebuilt from Chroma's metadata every
    ``refresh_s``, and sooner when the number of records changes (checked every
    ``COUNT_CHECK_S``: a count is cheap, a rebuild reads every record). Movies seen in a
    request are added at once, so a film is known as soon as anyone asks about it."""

    COUNT_CHECK_S = 30.0

    def __init__(self, catalog: Catalog, refresh_s: float) -> None:
        self._catalog = catalog
        self._refresh_s = refresh_s
        self.index = TitleIndex()
        self.built = False
        self._records = -1
        self._built_at = 0.0

    async def refresh(self) -> None:
        started = time.perf_counter()
        titles: list[tuple[int, str]] = []
        overviews: list[str] = []
        records = await self._catalog.heartbeat()
        async for metadata in self._catalog.all_metadata():
            tmdb_id, title = metadata.get("tmdb_id"), metadata.get("title")
            if isinstance(tmdb_id, int) and isinstance(title, str):
                titles.append((tmdb_id, title))
            raw = metadata.get("movie")
            if isinstance(raw, str):
                overviews.append(_overview(raw))
        # Tokenising 15k overviews takes a moment of CPU: keep the event loop serving.
        self.index = await anyio.to_thread.run_sync(TitleIndex.build, titles, overviews)
        self.built = True
        self._records = records
        self._built_at = time.monotonic()
        log.info(
            "title_index_built",
            titles=len(self.index),
            movies=len(titles),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def refresh_if_stale(self) -> bool:
        """Rebuild when the interval has passed or the collection grew or shrank."""
        due = time.monotonic() - self._built_at >= self._refresh_s
        if not due and await self._catalog.heartbeat() == self._records:
            return False
        await self.refresh()
        return True

    def add(self, movies: Iterable[Movie]) -> None:
        for movie in movies:
            self.index.add(movie.tmdb_id, movie.title)

    async def keep_fresh(self) -> None:
        """Check forever (a background task of the lifespan); a failed rebuild keeps the
        previous index and is retried at the next check."""
        while True:
            await asyncio.sleep(min(self.COUNT_CHECK_S, self._refresh_s))
            try:
                await self.refresh_if_stale()
            except Exception as exc:  # noqa: BLE001 - any failure: keep serving the old index
                log.warning("title_index_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    async def check(self) -> None:
        if not self.built:
            msg = "the title index is not built yet"
            raise RuntimeError(msg)


def _overview(raw_movie: str) -> str:
    try:
        data = json.loads(raw_movie)
    except ValueError:
        return ""
    overview = data.get("overview") if isinstance(data, dict) else None
    return overview if isinstance(overview, str) else ""
