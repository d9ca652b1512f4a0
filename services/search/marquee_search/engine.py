"""Search logic over the Chroma collection and the replica's catalog mirror: query encoding,
semantic / keyword / hybrid search, filters, similar movies, browsing and recommendations."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from prometheus_client import Counter

from marquee_search.batching import QueryBatcher
from marquee_search.catalog import hit_from_movie
from marquee_search.features import CandidateSignals, RequestCues, candidate_features, parse_request
from marquee_search.hybrid import DEFAULT_FUSION, FusionParams, fuse
from marquee_search.keyword import DEFAULT_BM25, Bm25Params
from marquee_search.kinds import DEFAULT_KINDS, Kind, KindParams, classify
from marquee_search.taste import DEFAULT_TASTE, TasteParams
from marquee_shared.api import (
    MovieDetail,
    MovieFilters,
    MovieHit,
    SearchMode,
)
from marquee_shared.httpapi import MovieNotFoundError
from marquee_shared.index import genre_key, readable_movie, record_id
from marquee_shared.model.windows import DEFAULT_WINDOWS, WindowParams, combine

if TYPE_CHECKING:
    from collections.abc import Callable

    from chromadb.api.models.AsyncCollection import AsyncCollection
    from numpy.typing import NDArray

    from marquee_search.catalog import CatalogMirror
    from marquee_search.ranker import LearnedRanker
    from marquee_search.sync import IndexSync
    from marquee_shared.model.encoder import Encoder
    from marquee_shared.model.windows import Windower


FILTER_PATHS = Counter(
    "marquee_search_filtered_queries_total",
    "Dense queries by how they ran: memory (exact, over this replica's mirrored vectors, "
    "filters as a mask), none (Chroma, unfiltered), python (Chroma over-fetched, filtered "
    "here), where (Chroma's filter), fallback (over-fetch fell short, then where)",
    ["path"],
)


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


def hit_from_record(metadata: Mapping[str, Any], score: float) -> MovieHit | None:
    """The record's result row; None for a record that cannot be read (skipped and logged)."""
    movie = readable_movie(metadata)
    return None if movie is None else hit_from_movie(movie, score)


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
class SimilarFloor:
    """The least a similar movie must have, unless the request sets its own rating or vote
    filter: enough votes that its rating means something, and a rating that is not a flop."""

    min_votes: int | None = 20
    min_rating: float | None = 5.0

    def passes(self, mirror: CatalogMirror, tmdb_id: int) -> bool:
        row = mirror.row(tmdb_id)
        if row is None:
            return True
        votes, rating = mirror.votes[row], mirror.rating[row]
        # NaN (unknown) compares False: an unknown figure is not held against a movie.
        too_few = self.min_votes is not None and bool(votes < self.min_votes)
        too_low = self.min_rating is not None and bool(rating < self.min_rating)
        return not (too_few or too_low)


@dataclass(frozen=True, slots=True)
class Tuning:
    bm25: Bm25Params = DEFAULT_BM25
    fusion: FusionParams = DEFAULT_FUSION
    taste: TasteParams = DEFAULT_TASTE
    filters: FilterPolicy = DEFAULT_FILTER_POLICY
    windows: WindowParams = DEFAULT_WINDOWS
    kinds: KindParams = DEFAULT_KINDS
    similar_floor: SimilarFloor = SimilarFloor()


class LlmReranker(Protocol):
    """Re-orders the top hits of a complex request (marquee_search.llm_rerank)."""

    version: str
    candidates: int

    def wants(self, q: str) -> bool: ...

    def resolver(self, mirror: CatalogMirror | None) -> Callable[[str], int | None] | None: ...

    async def rerank(
        self,
        q: str,
        hits: Sequence[MovieHit],
        resolve_title: Callable[[str], int | None] | None = None,
    ) -> list[int] | None: ...


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    mode: SearchMode
    hits: list[MovieHit]
    ranker: str
    """What ordered the hits: dense, bm25f, fusion, a learned ranker's version, +claude."""
    kind: Kind = "description"
    """A lookup (title, name) or a description (marquee_search.kinds): how it was fused."""


@dataclass(frozen=True, slots=True)
class Ranking:
    items: list[tuple[int, float]]
    ranker: str
    kind: Kind = "description"


@dataclass(frozen=True, slots=True)
class Candidates:
    """A request's fused candidates, and for the first ones (those the mirror holds) the
    signals the ranker's features are made of."""

    fused: list[tuple[int, float]]
    cues: RequestCues
    signals: CandidateSignals | None = None
    signals_ids: list[int] = field(default_factory=list)
    dense_ids: list[int] = field(default_factory=list)
    """The dense side's own order (evaluation)."""
    kind: Kind = "description"


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
        ranker: LearnedRanker | None = None,
        windower: Windower | None = None,
        llm_reranker: LlmReranker | None = None,
    ) -> None:
        self._collection = collection
        self._encoder = encoder
        self._batcher = QueryBatcher(encoder, passes=encode_passes)
        self._cache = QueryVectorCache(cache_size)
        self._sync = sync
        self.tuning = tuning or Tuning()
        self._exact_max = exact_max_movies
        self._ranker = ranker
        self._windower = windower
        self._llm = llm_reranker

    @property
    def ranker_version(self) -> str:
        return "fusion" if self._ranker is None else self._ranker.version

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
    ) -> SearchOutcome:
        """Hits for the query, the mode that produced them (hybrid degrades to semantic while
        the keyword index is loading) and what ordered them."""
        if mode == "hybrid" and self.mirror is None:
            mode = "semantic"
        if mode == "semantic":
            vector = await self.embed_query(q)
            found = await self.nearest(vector, k, filters)
            return SearchOutcome(mode, self._as_hits(found), "dense")
        if mode == "keyword":
            ranked = self.keyword_ranking(q, k, filters)
            return SearchOutcome(mode, await self.hits(ranked, filters), "bm25f")
        llm = self._llm
        wants_llm = llm is not None and llm.wants(q)
        depth = max(k, llm.candidates) if wants_llm and llm is not None else k
        ranking = await self.hybrid_ranking(q, depth, filters)
        hits = await self.hits(ranking.items, filters)
        ranker = ranking.ranker
        if wants_llm and llm is not None:
            reordered = await self._llm_rerank(llm, q, hits, filters)
            if reordered is not None:
                hits, ranker = reordered, f"{ranker}+{llm.version}"
        return SearchOutcome(mode, hits[:k], ranker, ranking.kind)

    async def _llm_rerank(
        self, llm: LlmReranker, q: str, hits: list[MovieHit], filters: MovieFilters
    ) -> list[MovieHit] | None:
        """Claude's order of the top hits, or None (the caller keeps its own). Only movies of
        the catalog come back: ids outside the candidates are dropped, and a title Claude
        names is kept only if it resolves to a catalog movie passing the filters."""
        head = hits[: llm.candidates]
        order = await llm.rerank(q, head, llm.resolver(self.mirror))
        if not order:
            return None
        by_id = {h.tmdb_id: h for h in hits}
        extra = [i for i in dict.fromkeys(order) if i not in by_id]
        mirror = self.mirror
        if extra and mirror is not None:
            keep = mirror.mask(filters)
            allowed = [i for i in extra if (r := mirror.row(i)) is not None and keep[r]]
            for hit in await self.hits([(i, 0.0) for i in allowed], filters):
                by_id[hit.tmdb_id] = hit
        ranked = [by_id[i] for i in dict.fromkeys(order) if i in by_id]
        seen = {h.tmdb_id for h in ranked}
        rest = [h for h in hits if h.tmdb_id not in seen]
        return [*ranked, *rest]

    def keyword_ranking(self, q: str, k: int, filters: MovieFilters) -> list[tuple[int, float]]:
        mirror = self._require_mirror()
        return mirror.keyword_top(q, k, mirror.mask(filters), self.tuning.bm25)

    def fusion_for(self, q: str, keyword: Sequence[tuple[int, float]]) -> tuple[Kind, FusionParams]:
        """A lookup is fused with its own weight (marquee_search.kinds). Requests the learned
        ranker re-orders are always descriptions: the fused score is one of its features, and
        it was trained on the description fusion."""
        fusion, kinds, mirror = self.tuning.fusion, self.tuning.kinds, self.mirror
        if not kinds.enabled or mirror is None or not keyword:
            return "description", fusion
        if self._ranker is not None and self._ranker.applies(len(q.split())):
            return "description", fusion
        kind = classify(mirror.keyword, q, mirror.row(keyword[0][0]), kinds, self.tuning.bm25)
        if kind == "lookup":
            return kind, dataclasses.replace(fusion, alpha=kinds.lookup_alpha)
        return kind, fusion

    def windows(self, q: str) -> list[str]:
        """The texts the model encodes for a request: the request itself when it fits."""
        return [q] if self._windower is None else self._windower.windows(q)

    async def embed_windows(self, windows: Sequence[str]) -> NDArray[np.float32]:
        """Every window in the same forward pass (the batcher groups concurrent encodes)."""
        if len(windows) == 1:
            return np.asarray(await self.embed_query(windows[0]), np.float32)[None, :]
        found = await asyncio.gather(*(self.embed_query(w) for w in windows))
        return np.asarray(np.stack(found), np.float32)

    async def hybrid_ranking(self, q: str, k: int, filters: MovieFilters) -> Ranking:
        """The hybrid order: dense (all windows) and keyword candidates fused, then, for a
        description, re-ordered by the learned ranker."""
        ranker = self._ranker
        if ranker is not None and not ranker.applies(len(q.split())):
            ranker = None  # a title or a name: the fusion's order, at the fusion's cost
        found = await self.candidates(
            q, filters, k, signals_depth=0 if ranker is None else ranker.params.depth
        )
        if ranker is None or found.signals is None:
            return Ranking(found.fused[:k], "fusion", found.kind)
        scores = ranker.score(self.features(q, found))
        order = np.lexsort((np.arange(len(scores)), -scores))
        ids = found.signals_ids
        ranked = [(ids[i], float(scores[i])) for i in order]
        # Fused candidates past the ranker's depth (or unknown to the mirror) follow in order.
        placed = set(ids)
        floor = float(scores.min()) if len(scores) else 0.0
        ranked += [(i, floor) for i, _ in found.fused if i not in placed]
        return Ranking(ranked[:k], ranker.version)

    def features(self, q: str, found: Candidates) -> NDArray[np.float32]:
        """The ranker's feature matrix for the candidates (marquee_search.features)."""
        assert found.signals is not None
        assert self.mirror is not None
        return candidate_features(found.cues, found.signals, self.mirror, q)

    async def candidates(
        self, q: str, filters: MovieFilters, k: int = 10, *, signals_depth: int = 0
    ) -> Candidates:
        """The fused candidates of a request, and for the first ``signals_depth`` of them what
        retrieval computed about each: the learned ranker's input, for serving and for
        training (bench/train_ranker.py)."""
        depth = max(self.tuning.fusion.depth, k)
        windows = self.windows(q)
        encoding = asyncio.ensure_future(self.embed_windows(windows))
        keyword = self.keyword_ranking(q, depth, filters)  # while the model encodes
        kind, fusion = self.fusion_for(q, keyword)
        queries = await encoding
        mirror = self.mirror
        cues = parse_request(q, len(windows))
        exact = (
            mirror is not None and 0 < len(mirror) <= self._exact_max and mirror.vectors_complete()
        )
        if exact and mirror is not None:
            FILTER_PATHS.labels("memory").inc()
            sims = mirror.similarities(queries)
            dense_score, head, best, mean = combine(sims, self.tuning.windows)
            keep = mirror.searchable(None if filters.is_empty() else mirror.mask(filters))
            rows = mirror.top_rows(dense_score, keep, depth)
            dense = [(int(mirror.tmdb_ids[r]), float(dense_score[r])) for r in rows]
            fused = fuse(dense, keyword, fusion)
            return self._with_signals(
                cues,
                fused,
                keyword,
                dense_of=lambda rows: np.stack(
                    [dense_score[rows], head[rows], best[rows], mean[rows]], axis=1
                ),
                depth=signals_depth,
                dense=dense,
                kind=kind,
            )
        # Chroma answers: each window's neighbours, then every candidate's cosines to every
        # window from its stored vector (one read), combined as on the exact path.
        per_window = await asyncio.gather(
            *(self.nearest(v, depth, filters, metadata=False) for v in queries)
        )
        pool = list(dict.fromkeys(n.tmdb_id for found in per_window for n in found))
        if len(queries) == 1 and (not signals_depth or mirror is None):
            dense = [(n.tmdb_id, n.similarity) for n in per_window[0]]
            return Candidates(
                fuse(dense, keyword, fusion), cues, dense_ids=[i for i, _ in dense], kind=kind
            )
        stored = await self.vectors(list(dict.fromkeys([*pool, *(i for i, _ in keyword)])))
        ids = list(stored)
        matrix = (
            np.stack([stored[i] for i in ids])
            if ids
            else np.zeros((0, queries.shape[1]), np.float32)
        ).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        cosines = (matrix / np.where(norms > 0, norms, 1.0)) @ queries.T
        parts = combine(np.asarray(cosines, np.float32), self.tuning.windows)
        at = {i: n for n, i in enumerate(ids)}
        in_pool = set(pool)
        dense = sorted(
            ((i, float(parts[0][at[i]])) for i in ids if i in in_pool), key=lambda x: -x[1]
        )[:depth]
        fused = fuse(dense, keyword, fusion)
        if mirror is None:
            return Candidates(fused, cues, dense_ids=[i for i, _ in dense], kind=kind)
        rows_of = {mirror.row(i): at[i] for i in ids}
        return self._with_signals(
            cues,
            fused,
            keyword,
            dense_of=lambda rows: np.stack(
                [p[[rows_of[int(r)] for r in rows]] for p in parts], axis=1
            ),
            depth=signals_depth,
            dense=dense,
            kind=kind,
        )

    @staticmethod
    def _mirrored_vectors(mirror: CatalogMirror, rows: list[int]) -> NDArray[np.float32] | None:
        if mirror.vectors is None or not rows or not mirror.has_vector[rows].all():
            return None
        return mirror.vectors[rows]

    def _with_signals(
        self,
        cues: RequestCues,
        fused: list[tuple[int, float]],
        keyword: Sequence[tuple[int, float]],
        *,
        dense_of: Callable[[NDArray[np.intp]], NDArray[np.float32]],
        depth: int,
        dense: Sequence[tuple[int, float]],
        kind: Kind,
    ) -> Candidates:
        mirror = self.mirror
        dense_ids = [i for i, _ in dense]
        if not depth or mirror is None:
            return Candidates(fused, cues, dense_ids=dense_ids, kind=kind)
        bm25 = dict(keyword)
        head = fused[:depth]
        picked = [(i, s, r) for i, s in head if (r := mirror.row(i)) is not None]
        rows = np.asarray([r for _, _, r in picked], np.intp)
        try:
            # (candidates x 4): the whole request's cosine, the head's, the best and the mean
            # window's; one gather per column rather than a tuple per candidate.
            parts = np.asarray(dense_of(rows), np.float32).reshape(-1, 4)
        except KeyError:  # a movie the mirror holds but Chroma no longer does: skip features
            return Candidates(fused, cues, dense_ids=dense_ids, kind=kind)
        signals = CandidateSignals(
            rows=rows,
            dense=parts[:, 0],
            dense_head=parts[:, 1],
            dense_max=parts[:, 2],
            dense_mean=parts[:, 3],
            bm25f=np.asarray([bm25.get(i, 0.0) for i, _, _ in picked], np.float32),
            fused=np.asarray([s for _, s, _ in picked], np.float32),
            vectors=self._mirrored_vectors(mirror, [r for _, _, r in picked]),
        )
        return Candidates(fused, cues, signals, [i for i, _, _ in picked], dense_ids, kind)

    async def hits(
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
                    if (hit := hit_from_record(md, scores[tmdb_id])) is not None:
                        hits[tmdb_id] = hit
        # A movie deleted from Chroma before this replica heard of it is simply left out.
        return [hits[i] for i, _ in ranked if i in hits]

    def _as_hits(self, found: Sequence[Neighbour]) -> list[MovieHit]:
        """Result rows for neighbours: from the record Chroma returned with them, else from
        the mirror (the exact path, which only returns movies the mirror holds)."""
        hits = []
        mirror = self.mirror
        for n in found:
            if n.metadata:
                if (hit := hit_from_record(n.metadata, n.similarity)) is not None:
                    hits.append(hit)
            elif mirror is not None and (hit := mirror.hit(n.tmdb_id, n.similarity)):
                hits.append(hit)
        return hits

    async def similar_text(self, q: str, k: int, filters: MovieFilters) -> list[MovieHit]:
        return (await self.search(q, k, filters, "semantic")).hits

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
        movie = readable_movie(metadata)
        if movie is None:  # unreadable: as good as absent (logged for the operator)
            raise MovieNotFoundError(tmdb_id)
        return MovieDetail(**movie.model_dump(), version=str(metadata["content_hash"]))

    async def similar(self, tmdb_id: int, k: int, filters: MovieFilters) -> list[MovieHit]:
        got = await self._collection.get(ids=[record_id(tmdb_id)], include=["embeddings"])
        embeddings = got["embeddings"]
        if not got["ids"] or embeddings is None or len(embeddings) == 0:
            raise MovieNotFoundError(tmdb_id)
        floor = self.tuning.similar_floor
        mirror = self.mirror
        exclude = frozenset({tmdb_id})
        if filters.min_votes is not None or filters.min_rating is not None or mirror is None:
            return self._as_hits(await self.nearest(embeddings[0], k, filters, exclude=exclude))
        # A floor on quality the caller did not set one for: a 0.5-star film with four votes
        # is a near neighbour of nothing a person wants suggested. Movies whose rating or
        # votes are unknown pass (a filter would drop them), so it is applied here, on the
        # mirror's columns, to an over-fetched list.
        fetch = k * 2 + 10
        while True:
            found = await self.nearest(embeddings[0], fetch, filters, exclude=exclude)
            kept = [n for n in found if floor.passes(mirror, n.tmdb_id)]
            if len(kept) >= k or len(found) < fetch or fetch >= 1000:
                return self._as_hits(kept[:k])
            fetch *= 4

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
        return await self.hits([(i, scores[i]) for i in ids])

    async def stored_ids(self, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` the index holds."""
        if not ids:
            return set()
        got = await self._collection.get(ids=[record_id(i) for i in ids], include=[])
        return {int(i) for i in got["ids"]}

    async def count(self) -> int:
        return await self._collection.count()
