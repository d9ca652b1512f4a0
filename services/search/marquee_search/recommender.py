"""Taste recommendations over the search engine's index: a request's likes, ratings and
dislikes turned into weighted liked and disliked films, the taste algorithm (``taste.py``) run
against Chroma and the catalog mirror, and the answer assembled with its tastes and reasons.

Made per request from the engine that serves it (a model switch swaps the engine), so it holds
no state of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from marquee_search.engine import NoKnownMoviesError
from marquee_search.taste import Recommendations, TasteParams, recommend
from marquee_shared.api import (
    DISLIKED_RATING,
    LIKED_RATING,
    MovieFilters,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedMovie,
    Taste,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from marquee_search.engine import SearchEngine


class Recommender:
    def __init__(self, engine: SearchEngine) -> None:
        self._engine = engine

    async def recommend(self, request: RecommendationRequest) -> RecommendationResponse:
        liked: dict[int, float] = dict.fromkeys(request.liked, 1.0)
        disliked = list(request.disliked)
        for r in request.ratings:
            if r.rating >= LIKED_RATING:
                # 4 stars weigh 1, 5 stars 2: a favourite pulls its taste harder.
                liked[r.tmdb_id] = max(liked.get(r.tmdb_id, 0.0), r.rating - LIKED_RATING + 1.0)
            elif r.rating <= DISLIKED_RATING:
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
        known = await self._engine.stored_ids(sorted(given))
        hits = {
            h.tmdb_id: h
            for h in await self._engine.hits([(p.tmdb_id, p.relevance) for p in result.picks])
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
        mirror = self._engine.mirror

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
            _ChromaVectors(self._engine),
            liked=liked,
            disliked=disliked,
            exclude=exclude,
            k=k,
            mmr_lambda=mmr_lambda,
            filters=filters,
            prior=prior,
            popular=popular,
            params=params or self._engine.tuning.taste,
        )


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
