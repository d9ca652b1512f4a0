"""Search logic over the Chroma collection: query encoding, filters, result shaping."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from marquee_shared.api import MovieDetail, MovieFilters, MovieHit
from marquee_shared.index import genre_key, movie_from_metadata, record_id

if TYPE_CHECKING:
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from numpy.typing import NDArray

    from marquee_embedder.encoder import Encoder


class MovieNotFoundError(LookupError):
    def __init__(self, tmdb_id: int) -> None:
        super().__init__(f"movie {tmdb_id} is not in the catalog")
        self.tmdb_id = tmdb_id


def build_where(filters: MovieFilters) -> dict[str, Any] | None:
    """Chroma ``where`` clause for the filters (None when there are none)."""
    clauses: list[dict[str, Any]] = []
    if filters.genres:
        genre_clauses = [{genre_key(g): True} for g in filters.genres]
        clauses.append(genre_clauses[0] if len(genre_clauses) == 1 else {"$or": genre_clauses})
    if filters.year_min is not None:
        clauses.append({"year": {"$gte": filters.year_min}})
    if filters.year_max is not None:
        clauses.append({"year": {"$lte": filters.year_max}})
    if filters.min_rating is not None:
        clauses.append({"vote_average": {"$gte": filters.min_rating}})
    if filters.language:
        clauses.append({"original_language": filters.language})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def hit_from_record(metadata: dict[str, Any], distance: float) -> MovieHit:
    movie = movie_from_metadata(metadata)
    return MovieHit(
        tmdb_id=movie.tmdb_id,
        title=movie.title,
        year=movie.year,
        genres=movie.genres,
        rating=movie.vote_average,
        vote_count=movie.vote_count,
        original_language=movie.original_language,
        overview=movie.overview,
        # Chroma's cosine space returns 1 - cosine similarity.
        score=round(1.0 - distance, 4),
    )


class QueryVectorCache:
    """A small LRU of query vectors: the model is the main cost of a search."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, NDArray[Any]] = OrderedDict()

    def get(self, key: str) -> NDArray[Any] | None:
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def put(self, key: str, vector: NDArray[Any]) -> None:
        if self._size <= 0:
            return
        self._items[key] = vector
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class SearchEngine:
    def __init__(self, collection: AsyncCollection, encoder: Encoder, cache_size: int) -> None:
        self._collection = collection
        self._encoder = encoder
        self._cache = QueryVectorCache(cache_size)

    async def embed_query(self, text: str) -> NDArray[Any]:
        key = " ".join(text.lower().split())
        vector = self._cache.get(key)
        if vector is None:
            vector = (await anyio.to_thread.run_sync(self._encoder.encode, [text]))[0]
            self._cache.put(key, vector)
        return vector

    async def search(self, q: str, k: int, filters: MovieFilters) -> list[MovieHit]:
        vector = await self.embed_query(q)
        return await self._nearest(vector, k, filters)

    async def get_movie(self, tmdb_id: int) -> MovieDetail:
        got = await self._collection.get(ids=[record_id(tmdb_id)], include=["metadatas"])
        if not got["ids"] or not got["metadatas"]:
            raise MovieNotFoundError(tmdb_id)
        metadata = got["metadatas"][0]
        movie = movie_from_metadata(metadata)
        return MovieDetail(**movie.model_dump(), version=str(metadata["content_hash"]))

    async def similar(self, tmdb_id: int, k: int, filters: MovieFilters) -> list[MovieHit]:
        got = await self._collection.get(ids=[record_id(tmdb_id)], include=["embeddings"])
        embeddings = got["embeddings"]
        if not got["ids"] or embeddings is None or len(embeddings) == 0:
            raise MovieNotFoundError(tmdb_id)
        # One extra: the movie itself is its own nearest neighbour.
        hits = await self._nearest(embeddings[0], k + 1, filters)
        return [h for h in hits if h.tmdb_id != tmdb_id][:k]

    async def _nearest(self, vector: Any, k: int, filters: MovieFilters) -> list[MovieHit]:
        result = await self._collection.query(
            query_embeddings=[vector],
            n_results=k,
            where=build_where(filters),
            include=["metadatas", "distances"],
        )
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            hit_from_record(dict(md), float(d)) for md, d in zip(metadatas, distances, strict=True)
        ]

    async def count(self) -> int:
        return await self._collection.count()
