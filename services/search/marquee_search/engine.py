"""Search logic over the Chroma collection and the replica's catalog mirror: query encoding,
semantic / keyword / hybrid search, filters, similar movies, browsing and recommendations."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from prometheus_client import Counter

from marquee_search.batching import QueryBatcher
from marquee_search.catalog import hit_from_movie
from marquee_search.hybrid import DEFAULT_FUSION, FusionParams, fuse
from marquee_search.keyword import DEFAULT_BM25, Bm25Params
from marquee_search.taste import DEFAULT_TASTE, Recommendations, TasteParams, recommend
from marquee_shared.api import (
    MovieDetail,
    MovieFilters,
    MovieHit,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedMovie,
    SearchMode,
    Taste,
)
from marquee_shared.index import genre_key, movie_from_metadata, record_id

if TYPE_CHECKING:
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from numpy.typing import NDArray

    from marquee_embedder.encoder import Encoder
    from marquee_search.catalog import CatalogMirror
    from marquee_search.sync import IndexSync


FILTER_PATHS = Counter(
    "marquee_search_filtered_queries_total",
    "Dense queries by how they ran: memory (exact, over this replica's mirrored vectors, "
    "filters as a mask), none (Chroma, unfiltered), python (Chroma over-fetched, filtered "
    "here), where (Chroma's filter), fallback (over-fetch fell short, then where)",
    ["path"],
)


class MovieNotFoundError(LookupError):
    def __init__(self, tmdb_id: int) -> None:
        super().__init__(f"movie {tmdb_id} is not in the catalog")
        self.tmdb_id = tmdb_id


class NoKnownMoviesError(LookupError):
    """None of the liked movies of a recommendation request is in the catalog."""


class KeywordIndexLoadingError(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the keyword index is still loading; retry shortly or use mode=semantic")


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
    if filters.min_votes is not None:
        clauses.append({"vote_count": {"$gte": filters.min_votes}})
    if filters.language:
        clauses.append({"original_language": filters.language})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _at_least(md: Mapping[str, Any], key: str, bound: float | None) -> bool:
    value = md.get(key)
    return bound is None or (isinstance(value, int | float) and value >= bound)


def metadata_passes(filters: MovieFilters, md: Mapping[str, Any]) -> bool:
    """The ``where`` clause of build_where, evaluated in Python on a record's metadata (a
    missing value fails its filter, as in Chroma)."""
    if filters.genres and not any(md.get(genre_key(g)) is True for g in filters.genres):
        return False
    year = md.get("year")
    if filters.year_max is not None and not (isinstance(year, int) and year <= filters.year_max):
        return False
    return (
        _at_least(md, "year", filters.year_min)
        and _at_least(md, "vote_average", filters.min_rating)
        and _at_least(md, "vote_count", filters.min_votes)
        and (not filters.language or md.get("original_language") == filters.language)
    )


def hit_from_record(metadata: Mapping[str, Any], score: float) -> MovieHit:
    return hit_from_movie(movie_from_metadata(metadata), score)


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


@dataclass(frozen=True, slots=True)
class Neighbour:
    tmdb_id: int
    similarity: float
    metadata: Mapping[str, Any]
    vector: NDArray[np.float32] | None = None


@dataclass(frozen=True, slots=True)
class FilterPolicy:
    """How filtered dense queries run (bench/filters.py measured why: Chroma's ``where`` made a
    query 4 to 30 times slower than an unfiltered one on the full catalog).

    A filter that keeps at least ``min_selectivity`` of the catalog is applied here, on the
    mirror's columns, to an unfiltered query for ids only, over-fetched ``overfetch`` times the
    expected need (at most ``max_fetch``); a more selective one goes to Chroma's ``where``. If
    the over-fetch leaves fewer than asked, ``where`` answers.
    """

    min_selectivity: float = 0.02
    overfetch: float = 1.5
    max_fetch: int = 3000


DEFAULT_FILTER_POLICY = FilterPolicy()


@dataclass(frozen=True, slots=True)
class Tuning:
    bm25: Bm25Params = DEFAULT_BM25
    fusion: FusionParams = DEFAULT_FUSION
    taste: TasteParams = DEFAULT_TASTE
    filters: FilterPolicy = DEFAULT_FILTER_POLICY


class SearchEngine:
    def __init__(
        self,
        collection: AsyncCollection,
        encoder: Encoder,
        cache_size: int,
        sync: IndexSync | None = None,
        tuning: Tuning | None = None,
        *,
        exact_max_movies: int = 0,
        encode_passes: int = 1,
    ) -> None:
        self._collection = collection
        self._encoder = encoder
        self._batcher = QueryBatcher(encoder, passes=encode_passes)
        self._cache = QueryVectorCache(cache_size)
        self._sync = sync
        self.tuning = tuning or Tuning()
        self._exact_max = exact_max_movies

    @property
    def mirror(self) -> CatalogMirror | None:
        return None if self._sync is None else self._sync.mirror

    def _require_mirror(self) -> CatalogMirror:
        mirror = self.mirror
        if mirror is None:
            raise KeywordIndexLoadingError
        return mirror

    async def embed_query(self, text: str) -> NDArray[Any]:
        key = " ".join(text.lower().split())
        vector = self._cache.get(key)
        if vector is None:
            vector = await self._batcher.encode(text)
            self._cache.put(key, vector)
        return vector

    def remember_query_vector(self, text: str, vector: NDArray[Any]) -> None:
        """Prime the cache with a vector encoded elsewhere (batch evaluation)."""
        self._cache.put(" ".join(text.lower().split()), vector)

    # -- search ----------------------------------------------------------------------------

    async def search(
        self, q: str, k: int, filters: MovieFilters, mode: SearchMode = "hybrid"
    ) -> tuple[SearchMode, list[MovieHit]]:
        """Hits for the query and the mode that produced them (hybrid degrades to semantic
        while the keyword index is loading)."""
        if mode == "hybrid" and self.mirror is None:
            mode = "semantic"
        if mode == "semantic":
            vector = await self.embed_query(q)
            found = await self.nearest(vector, k, filters)
            return mode, self._as_hits(found)
        if mode == "keyword":
            ranked = self.keyword_ranking(q, k, filters)
            return mode, await self._hits(ranked, filters)
        return mode, await self._hits(await self.hybrid_ranking(q, k, filters), filters)

    def keyword_ranking(self, q: str, k: int, filters: MovieFilters) -> list[tuple[int, float]]:
        mirror = self._require_mirror()
        return mirror.keyword_top(q, k, mirror.mask(filters), self.tuning.bm25)

    async def hybrid_ranking(
        self, q: str, k: int, filters: MovieFilters
    ) -> list[tuple[int, float]]:
        fusion = self.tuning.fusion
        depth = max(fusion.depth, k)
        encoding = asyncio.ensure_future(self.embed_query(q))
        keyword = self.keyword_ranking(q, depth, filters)  # while the model encodes
        # Ids and distances only: the fusion needs no more, and the rows of the few kept come
        # from the mirror afterwards. When Chroma answers (catalogs past the exact limit),
        # shipping a hundred records to keep ten cost three times the query itself (16-18 ms
        # against 5-6 ms; docs/performance.md).
        dense = await self.nearest(await encoding, depth, filters, metadata=False)
        fused = fuse([(n.tmdb_id, n.similarity) for n in dense], keyword, fusion)
        return fused[:k]

    async def _hits(
        self, ranked: Sequence[tuple[int, float]], filters: MovieFilters | None = None
    ) -> list[MovieHit]:
        """Result rows for ranked (tmdb id, score) pairs: from the mirror, which the changelog
        keeps in step with Chroma, and from Chroma only for a movie the mirror has not heard of
        yet (then checked against the filters: the ranking could not see its columns)."""
        mirror = self.mirror
        hits: dict[int, MovieHit] = {}
        for i, s in ranked:
            hit = None if mirror is None else mirror.hit(i, s)
            if hit is not None:
                hits[i] = hit
        missing = [i for i, _ in ranked if i not in hits]
        if missing:
            got = await self._collection.get(
                ids=[record_id(i) for i in missing], include=["metadatas"]
            )
            scores = dict(ranked)
            for md in got["metadatas"] or []:
                if filters is None or metadata_passes(filters, md):
                    tmdb_id = int(md["tmdb_id"])  # type: ignore[arg-type]
                    hits[tmdb_id] = hit_from_record(md, scores[tmdb_id])
        # A movie deleted from Chroma before this replica heard of it is simply left out.
        return [hits[i] for i, _ in ranked if i in hits]

    def _as_hits(self, found: Sequence[Neighbour]) -> list[MovieHit]:
        """Result rows for neighbours: from the record Chroma returned with them, else from
        the mirror (the exact path, which only returns movies the mirror holds)."""
        hits = []
        mirror = self.mirror
        for n in found:
            if n.metadata:
                hits.append(hit_from_record(n.metadata, n.similarity))
            elif mirror is not None and (hit := mirror.hit(n.tmdb_id, n.similarity)):
                hits.append(hit)
        return hits

    async def similar_text(self, q: str, k: int, filters: MovieFilters) -> list[MovieHit]:
        return (await self.search(q, k, filters, "semantic"))[1]

    # -- dense retrieval with filters --------------------------------------------------------

    async def nearest(
        self,
        vector: Any,
        n: int,
        filters: MovieFilters,
        *,
        exclude: frozenset[int] = frozenset(),
        vectors: bool = False,
        metadata: bool = True,
    ) -> list[Neighbour]:
        """The ``n`` nearest movies passing the filters, none of ``exclude``.

        With ``vectors`` the neighbours carry their stored vectors instead of their metadata
        (what the recommender needs): the query then asks Chroma for ids and distances only,
        and the vectors of the few kept are read by id, instead of shipping a vector and a
        record for every excluded movie too.
        """
        found = await self._filtered(
            vector, n + len(exclude), filters, metadata=metadata and not vectors
        )
        kept = [x for x in found if x.tmdb_id not in exclude][:n]
        if not vectors:
            return kept
        stored = await self.vectors([x.tmdb_id for x in kept])
        return [
            Neighbour(x.tmdb_id, x.similarity, {}, stored[x.tmdb_id])
            for x in kept
            if x.tmdb_id in stored
        ]

    async def _filtered(
        self, vector: Any, n: int, filters: MovieFilters, *, metadata: bool
    ) -> list[Neighbour]:
        """Up to ``n`` nearest passing the filters: exactly over the mirror's vectors when it
        holds them all, else from Chroma by the filter policy."""
        mirror = self.mirror
        if mirror is not None and 0 < len(mirror) <= self._exact_max and mirror.vectors_complete():
            FILTER_PATHS.labels("memory").inc()
            return self._exact(mirror, vector, n, filters)
        if filters.is_empty():
            FILTER_PATHS.labels("none").inc()
            return await self._query(vector, n, None, metadata=metadata)
        policy = self.tuning.filters
        mirror = self.mirror
        if mirror is not None and len(mirror):
            keep = mirror.mask(filters)
            share = float(keep.sum()) / len(mirror)
            if share == 0:
                return []
            if share >= policy.min_selectivity:
                fetch = min(policy.max_fetch, math.ceil(n / share * policy.overfetch) + 10)
                found = await self._over_fetch(
                    vector, n, fetch=fetch, filters=filters, keep=keep, metadata=metadata
                )
                if found is not None:
                    FILTER_PATHS.labels("python").inc()
                    return found
                FILTER_PATHS.labels("fallback").inc()
        FILTER_PATHS.labels("where").inc()
        return await self._query(vector, n, build_where(filters), metadata=metadata)

    def _exact(
        self, mirror: CatalogMirror, vector: Any, n: int, filters: MovieFilters
    ) -> list[Neighbour]:
        keep = None if filters.is_empty() else mirror.mask(filters)
        # About a millisecond for 16k movies: cheaper inline than a hop to a thread. No
        # records: their result rows come from the mirror too (_as_hits).
        return [Neighbour(i, sim, {}) for i, sim in mirror.nearest(vector, n, keep)]

    async def _with_records(
        self, found: Sequence[Neighbour], filters: MovieFilters
    ) -> list[Neighbour]:
        """``found`` with their stored records, less any whose record fails the filters: it
        has the last word, should the mirror lag behind an update."""
        got = await self._collection.get(
            ids=[record_id(x.tmdb_id) for x in found], include=["metadatas"]
        )
        records = {int(i): md for i, md in zip(got["ids"], got["metadatas"] or [], strict=True)}
        return [
            Neighbour(x.tmdb_id, x.similarity, records[x.tmdb_id])
            for x in found
            if x.tmdb_id in records and metadata_passes(filters, records[x.tmdb_id])
        ]

    async def _over_fetch(
        self,
        vector: Any,
        n: int,
        *,
        fetch: int,
        filters: MovieFilters,
        keep: NDArray[np.bool_],
        metadata: bool,
    ) -> list[Neighbour] | None:
        """An unfiltered query for ids only, filtered on the mirror's columns; records are
        read only for the few kept, and checked against their metadata (the source of truth,
        should the mirror lag). None when too few survive: the caller asks ``where``."""
        mirror = self.mirror
        assert mirror is not None
        found = await self._query(vector, fetch, None, metadata=False)
        rows = [mirror.row(x.tmdb_id) for x in found]
        # A movie the mirror has not heard of yet stays a candidate; its metadata decides.
        candidates = [x for x, r in zip(found, rows, strict=True) if r is None or keep[r]]
        exhausted = len(found) < fetch
        if not metadata or not candidates:
            kept = candidates[:n]
        else:
            head = candidates[: n + 10]
            kept = (await self._with_records(head, filters))[:n]
            exhausted = exhausted and len(head) == len(candidates)
        return kept if len(kept) >= n or exhausted else None

    async def _query(
        self, vector: Any, n: int, where: dict[str, Any] | None, *, metadata: bool
    ) -> list[Neighbour]:
        include: list[Any] = ["distances", "metadatas"] if metadata else ["distances"]
        result = await self._collection.query(
            query_embeddings=[vector], n_results=n, where=where, include=include
        )
        ids = result["ids"][0] if result["ids"] else []
        distances = (result["distances"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0] if metadata else [{}] * len(ids)
        return [
            # Chroma's cosine space returns 1 - cosine similarity.
            Neighbour(tmdb_id=int(i), similarity=1.0 - float(d), metadata=md)
            for i, d, md in zip(ids, distances, metadatas, strict=True)
        ]

    # -- by id -----------------------------------------------------------------------------

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
        found = await self.nearest(embeddings[0], k, filters, exclude=frozenset({tmdb_id}))
        return self._as_hits(found)

    async def vectors(self, ids: Sequence[int]) -> dict[int, NDArray[np.float32]]:
        if not ids:
            return {}
        got = await self._collection.get(
            ids=[record_id(i) for i in dict.fromkeys(ids)], include=["embeddings"]
        )
        embeddings = got["embeddings"]
        if embeddings is None:
            return {}
        return {
            int(i): np.asarray(v, np.float32) for i, v in zip(got["ids"], embeddings, strict=True)
        }

    # -- browsing --------------------------------------------------------------------------

    async def browse(
        self, order: Literal["trending", "top-rated"], k: int, filters: MovieFilters
    ) -> list[MovieHit]:
        mirror = self._require_mirror()
        values = mirror.popularity if order == "trending" else mirror.weighted_ratings()
        ids = mirror.top(values, mirror.mask(filters), k)
        scores = {
            int(mirror.tmdb_ids[r]): float(values[r]) for r in map(mirror.row, ids) if r is not None
        }
        return await self._hits([(i, scores[i]) for i in ids])

    # -- recommendations -------------------------------------------------------------------

    async def recommend(self, request: RecommendationRequest) -> RecommendationResponse:
        liked: dict[int, float] = dict.fromkeys(request.liked, 1.0)
        disliked = list(request.disliked)
        for r in request.ratings:
            if r.rating >= 4:
                # 4 stars weigh 1, 5 stars 2: a favourite pulls its taste harder.
                liked[r.tmdb_id] = max(liked.get(r.tmdb_id, 0.0), r.rating - 3.0)
            elif r.rating <= 2:
                disliked.append(r.tmdb_id)
        disliked = [i for i in dict.fromkeys(disliked) if i not in liked]
        given = {*liked, *disliked, *request.seen, *(r.tmdb_id for r in request.ratings)}
        result = await self.recommend_ids(
            liked=liked,
            disliked=disliked,
            exclude=given,
            k=request.k,
            mmr_lambda=request.mmr_lambda,
            filters=request.filters,
        )
        if not result.liked_ids:
            msg = "none of the liked movies is in the catalog"
            raise NoKnownMoviesError(msg)
        stored = await self._collection.get(ids=[record_id(i) for i in sorted(given)], include=[])
        known = {int(i) for i in stored["ids"]}
        hits = {
            h.tmdb_id: h for h in await self._hits([(p.tmdb_id, p.relevance) for p in result.picks])
        }
        return RecommendationResponse(
            k=request.k,
            mmr_lambda=request.mmr_lambda,
            filters=request.filters,
            tastes=[
                Taste(
                    liked=[result.liked_ids[m] for m in t.members],
                    weight=round(t.weight / sum(x.weight for x in result.tastes), 4),
                    results=t.picked,
                )
                for t in result.tastes
            ],
            results=[
                RecommendedMovie(**hits[p.tmdb_id].model_dump(), taste=p.taste, because=p.because)
                for p in result.picks
                if p.tmdb_id in hits
            ],
            unknown_ids=sorted(i for i in given if i not in known),
        )

    async def recommend_ids(
        self,
        *,
        liked: Mapping[int, float],
        disliked: Sequence[int],
        exclude: set[int],
        k: int,
        mmr_lambda: float,
        filters: MovieFilters,
        params: TasteParams | None = None,
    ) -> Recommendations:
        """The recommendation algorithm (marquee_search.taste) over Chroma and the mirror."""
        mirror = self.mirror

        def prior(ids: Sequence[int]) -> NDArray[np.float64]:
            if mirror is None:
                return np.zeros(len(ids))
            values = mirror.popularity_prior()
            rows = [mirror.row(i) for i in ids]
            return np.asarray([0.0 if r is None else values[r] for r in rows])

        def popular(n: int) -> list[int]:
            if mirror is None:
                return []
            return mirror.top(mirror.votes, mirror.mask(filters), n)

        return await recommend(
            _ChromaVectors(self),
            liked=liked,
            disliked=disliked,
            exclude=exclude,
            k=k,
            mmr_lambda=mmr_lambda,
            filters=filters,
            prior=prior,
            popular=popular,
            params=params or self.tuning.taste,
        )

    async def count(self) -> int:
        return await self._collection.count()


class _ChromaVectors:
    """The VectorStore the recommender uses: Chroma, through the engine's filter policy."""

    def __init__(self, engine: SearchEngine) -> None:
        self._engine = engine

    async def vectors(self, ids: Sequence[int]) -> dict[int, NDArray[np.float32]]:
        return await self._engine.vectors(ids)

    async def nearest(
        self, queries: NDArray[np.float32], n: int, filters: MovieFilters, exclude: frozenset[int]
    ) -> list[list[tuple[int, NDArray[np.float32]]]]:
        found = await asyncio.gather(
            *(self._engine.nearest(q, n, filters, exclude=exclude, vectors=True) for q in queries)
        )
        return [[(x.tmdb_id, x.vector) for x in hits if x.vector is not None] for hits in found]
