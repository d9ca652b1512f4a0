"""The replica's in-memory mirror of the Chroma collection: keyword index plus the columns that
filters, browsing and the popularity prior read (year, rating, votes, popularity, language,
genres), one row per movie.

Chroma stays the source of truth; the mirror is rebuilt from it at startup and kept in step by
the index changelog (marquee_search.sync). With ``vectors`` the mirror also holds each movie's
embedding (1.5 KiB per movie: 24 MB for the shared catalog), and dense queries are answered
here exactly, by one matrix product with the filters as a mask, instead of by a Chroma round
trip (docs/performance.md); large catalogs leave vectors in Chroma alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from marquee_search.keyword import DEFAULT_BM25, Bm25Params, KeywordIndex, movie_fields
from marquee_shared.api import MovieHit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import NDArray

    from marquee_shared.api import MovieFilters
    from marquee_shared.events import Movie

MAX_GENRES = 63


def hit_from_movie(movie: Movie, score: float) -> MovieHit:
    return MovieHit(
        tmdb_id=movie.tmdb_id,
        title=movie.title,
        year=movie.year,
        genres=movie.genres,
        rating=movie.vote_average,
        vote_count=movie.vote_count,
        original_language=movie.original_language,
        overview=movie.overview,
        poster_path=movie.poster_path,
        backdrop_path=movie.backdrop_path,
        score=round(score, 4),
    )


def bayesian_ratings(
    ratings: NDArray[np.float64], votes: NDArray[np.float64], prior_votes: float, prior: float
) -> NDArray[np.float64]:
    """Vote-count-weighted rating (IMDb's "weighted rating"): each movie's average is pulled
    towards the catalog mean by ``prior_votes`` imaginary votes, so a 10/10 from 3 votes ranks
    below an 8.5 from 20,000. Missing ratings or votes count as no votes (the prior)."""
    v = np.nan_to_num(votes, nan=0.0)
    r = np.nan_to_num(ratings, nan=prior)
    return (v * r + prior_votes * prior) / (v + prior_votes)


@dataclass(frozen=True, slots=True)
class RatingPrior:
    mean: float
    votes: float


class CatalogMirror:
    """Rows of movies with their filterable columns and the BM25F keyword index over them."""

    def __init__(self, capacity: int = 1024) -> None:
        self.keyword = KeywordIndex(capacity=capacity)
        self._row_of: dict[int, int] = {}
        self._free: list[int] = []
        self._capacity = 0
        self._rows_used = 0
        """Rows at and past this one were never allocated (the free list hands out the lowest
        first), so whole-table scans stop here instead of at the capacity."""
        self._hashes: dict[int, str] = {}
        self._hits: dict[int, MovieHit] = {}
        """Each movie's result row (score 0): hits are answered from here, not read back from
        Chroma, which cost a round trip and a JSON parse of every record per search."""
        self._genre_bits: dict[str, int] = {}
        self._languages: dict[str, int] = {}
        self.tmdb_ids = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)
        self.year = np.zeros(0, np.float64)
        self.rating = np.zeros(0, np.float64)
        self.votes = np.zeros(0, np.float64)
        self.popularity = np.zeros(0, np.float64)
        self.language = np.zeros(0, np.int32)
        self.genres = np.zeros(0, np.int64)
        self.has_vector = np.zeros(0, bool)
        self.vectors: NDArray[np.float32] | None = None
        """Unit-length embeddings by row, allocated with the first one given."""
        self._grow(capacity)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, tmdb_id: object) -> bool:
        return tmdb_id in self._row_of

    def content_hash(self, tmdb_id: int) -> str | None:
        return self._hashes.get(tmdb_id)

    def row(self, tmdb_id: int) -> int | None:
        return self._row_of.get(tmdb_id)

    def hit(self, tmdb_id: int, score: float) -> MovieHit | None:
        """The movie's result row with this score (None if the mirror does not hold it)."""
        template = self._hits.get(tmdb_id)
        return None if template is None else template.model_copy(update={"score": round(score, 4)})

    def _grow(self, capacity: int) -> None:
        if capacity <= self._capacity:
            return
        extra = capacity - self._capacity
        nan = np.full(extra, np.nan)
        self.tmdb_ids = np.concatenate([self.tmdb_ids, np.zeros(extra, np.int64)])
        self.alive = np.concatenate([self.alive, np.zeros(extra, bool)])
        self.year = np.concatenate([self.year, nan])
        self.rating = np.concatenate([self.rating, nan])
        self.votes = np.concatenate([self.votes, nan])
        self.popularity = np.concatenate([self.popularity, nan])
        self.language = np.concatenate([self.language, np.full(extra, -1, np.int32)])
        self.genres = np.concatenate([self.genres, np.zeros(extra, np.int64)])
        self.has_vector = np.concatenate([self.has_vector, np.zeros(extra, bool)])
        if self.vectors is not None:
            pad = np.zeros((extra, self.vectors.shape[1]), np.float32)
            self.vectors = np.concatenate([self.vectors, pad])
        self._free.extend(range(capacity - 1, self._capacity - 1, -1))
        self._capacity = capacity

    def _allocate(self, tmdb_id: int) -> int:
        row = self._row_of.get(tmdb_id)
        if row is None:
            if not self._free:
                self._grow(max(1024, self._capacity * 2))
            row = self._free.pop()
            self._row_of[tmdb_id] = row
            self._rows_used = max(self._rows_used, row + 1)
        return row

    def _genre_mask(self, genres: Iterable[str]) -> int:
        mask = 0
        for genre in genres:
            bit = self._genre_bits.get(genre)
            if bit is None:
                if len(self._genre_bits) >= MAX_GENRES:
                    continue  # beyond 63 distinct genres a genre is simply not filterable
                bit = self._genre_bits[genre] = len(self._genre_bits)
            mask |= 1 << bit
        return mask

    def _set_columns(self, row: int, movie: Movie) -> None:
        self.tmdb_ids[row] = movie.tmdb_id
        self.alive[row] = True
        self.year[row] = np.nan if movie.year is None else movie.year
        self.rating[row] = np.nan if movie.vote_average is None else movie.vote_average
        self.votes[row] = np.nan if movie.vote_count is None else movie.vote_count
        self.popularity[row] = np.nan if movie.popularity is None else movie.popularity
        language = movie.original_language
        self.language[row] = (
            -1 if language is None else self._languages.setdefault(language, len(self._languages))
        )
        self.genres[row] = self._genre_mask(movie.genres)

    def _set_vector(self, row: int, vector: NDArray[np.float32] | None) -> None:
        if vector is None:
            self.has_vector[row] = False
            return
        v = np.asarray(vector, np.float32).ravel()
        if self.vectors is None:
            self.vectors = np.zeros((len(self.alive), len(v)), np.float32)
        norm = float(np.linalg.norm(v))
        # Unit length, so a dot product is the cosine similarity Chroma's cosine space ranks by.
        self.vectors[row] = v / norm if norm > 0 else v
        self.has_vector[row] = True

    def upsert(
        self, movie: Movie, content_hash: str, vector: NDArray[np.float32] | None = None
    ) -> None:
        row = self._allocate(movie.tmdb_id)
        self._set_columns(row, movie)
        self._set_vector(row, vector)
        self._hashes[movie.tmdb_id] = content_hash
        self._hits[movie.tmdb_id] = hit_from_movie(movie, 0.0)
        self.keyword.add(row, movie_fields(movie))

    def bulk_load(
        self, movies: Iterable[tuple[Movie, str] | tuple[Movie, str, NDArray[np.float32] | None]]
    ) -> None:
        """Fill an empty mirror (the startup load and rebuilds): (movie, content hash[,
        vector]) each."""
        assert not self._row_of, "bulk_load fills an empty mirror"
        docs = []
        for movie, content_hash, *vector in movies:
            row = self._allocate(movie.tmdb_id)
            self._set_columns(row, movie)
            self._set_vector(row, vector[0] if vector else None)
            self._hashes[movie.tmdb_id] = content_hash
            self._hits[movie.tmdb_id] = hit_from_movie(movie, 0.0)
            docs.append((row, movie_fields(movie)))
        self.keyword.bulk_add(docs)

    def delete(self, tmdb_id: int) -> bool:
        row = self._row_of.pop(tmdb_id, None)
        if row is None:
            return False
        self._hashes.pop(tmdb_id, None)
        self._hits.pop(tmdb_id, None)
        self.keyword.remove(row)
        self.alive[row] = False
        self.has_vector[row] = False
        self.tmdb_ids[row] = 0
        self._free.append(row)
        return True

    # -- reading ---------------------------------------------------------------------------

    def mask(self, filters: MovieFilters, exclude: Iterable[int] = ()) -> NDArray[np.bool_]:
        """Rows that pass the filters, with exactly the semantics of the Chroma ``where``
        clause (engine.build_where): a movie without the filtered value does not pass."""
        keep = self.alive.copy()
        if filters.genres:
            wanted = 0
            for genre in filters.genres:
                bit = self._genre_bits.get(genre)
                if bit is not None:
                    wanted |= 1 << bit
            keep &= (self.genres & wanted) != 0
        # NaN compares False, so a missing year, rating or vote count fails the filter.
        with np.errstate(invalid="ignore"):
            if filters.year_min is not None:
                keep &= self.year >= filters.year_min
            if filters.year_max is not None:
                keep &= self.year <= filters.year_max
            if filters.min_rating is not None:
                keep &= self.rating >= filters.min_rating
            if filters.min_votes is not None:
                keep &= self.votes >= filters.min_votes
        if filters.language:
            code = self._languages.get(filters.language)
            keep &= False if code is None else self.language == code
        for tmdb_id in exclude:
            row = self._row_of.get(tmdb_id)
            if row is not None:
                keep[row] = False
        return keep

    def genre_mask(self, genres: Iterable[str]) -> int:
        """The bits of these genres in the ``genres`` column (0 for genres no movie has)."""
        mask = 0
        for genre in genres:
            bit = self._genre_bits.get(genre)
            if bit is not None:
                mask |= 1 << bit
        return mask

    def language_code(self, language: str) -> int:
        """The ``language`` column's code for an ISO 639-1 language (-1: no movie has it)."""
        return self._languages.get(language, -1)

    def similarities(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cosine of every allocated row to each query (rows x queries); rows without a vector
        or not alive are meaningless and must be masked by the caller (``searchable``)."""
        assert self.vectors is not None, "no vectors mirrored"
        q = np.asarray(queries, np.float32).reshape(-1, self.vectors.shape[1])
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q = (q / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        sims: NDArray[np.float32] = self.vectors[: self._rows_used] @ q.T
        return sims

    def searchable(self, keep: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
        """Allocated rows that are alive, have a vector and pass ``keep``."""
        used = self._rows_used
        candidates = self.alive[:used] & self.has_vector[:used]
        return candidates if keep is None else candidates & keep[:used]

    def top_rows(
        self, scores: NDArray[np.float32], keep: NDArray[np.bool_], n: int
    ) -> NDArray[np.intp]:
        """Rows of the ``n`` best ``scores`` among ``keep`` (both over the allocated rows),
        best first, ties by TMDB id."""
        rows = np.flatnonzero(keep)
        if not len(rows) or n <= 0:
            return rows[:0]
        n = min(n, len(rows))
        values = scores[rows]
        part = np.argpartition(-values, n - 1)[:n]
        order = part[np.lexsort((self.tmdb_ids[rows[part]], -values[part]))]
        return rows[order]

    def vectors_complete(self) -> bool:
        """Every movie here has its vector, so exact search over the mirror misses none."""
        return self.vectors is not None and bool(np.all(self.has_vector[self.alive]))

    def nearest(
        self, vector: NDArray[np.float32], n: int, keep: NDArray[np.bool_] | None = None
    ) -> list[tuple[int, float]]:
        """Exact top ``n`` (tmdb id, cosine similarity) among ``keep`` (all when None), best
        first; ties by id so that answers are stable."""
        assert self.vectors is not None, "no vectors mirrored"
        q = np.asarray(vector, np.float32).ravel()
        norm = float(np.linalg.norm(q))
        used = self._rows_used
        # The product is most of the cost, and it is bound by memory bandwidth: stopping at
        # the last used row skips the growth headroom (a fifth of the rows after a load).
        sims = self.vectors[:used] @ (q / norm if norm > 0 else q)
        candidates = self.alive[:used] & self.has_vector[:used]
        if keep is not None:
            candidates = candidates & keep[:used]
        rows = np.flatnonzero(candidates)
        if not len(rows) or n <= 0:
            return []
        n = min(n, len(rows))
        scores = sims[rows]
        part = np.argpartition(-scores, n - 1)[:n]
        order = part[np.lexsort((self.tmdb_ids[rows[part]], -scores[part]))]
        return [(int(self.tmdb_ids[rows[i]]), float(scores[i])) for i in order]

    def count(self, filters: MovieFilters) -> int:
        return int(self.mask(filters).sum())

    def top(self, values: NDArray[np.float64], keep: NDArray[np.bool_], k: int) -> list[int]:
        """TMDB ids of the ``k`` kept rows with the highest values, best first (NaN last)."""
        valid = keep & ~np.isnan(values)
        scored = np.where(valid, values, -np.inf)
        n = int(valid.sum())
        if n == 0 or k <= 0:
            return []
        k = min(k, n)
        part = np.argpartition(-scored, k - 1)[:k]
        order = part[np.lexsort((self.tmdb_ids[part], -scored[part]))]
        return [int(self.tmdb_ids[r]) for r in order]

    def rating_prior(self) -> RatingPrior:
        """The catalog's mean rating and the votes it is worth: the median vote count of rated
        movies (at least 10), so the prior adapts to the catalog's scale."""
        rated = self.alive & ~np.isnan(self.rating) & (np.nan_to_num(self.votes) > 0)
        if not rated.any():
            return RatingPrior(mean=0.0, votes=10.0)
        votes = self.votes[rated]
        mean = float(np.average(self.rating[rated], weights=votes))
        return RatingPrior(mean=mean, votes=max(10.0, float(np.median(votes))))

    def weighted_ratings(self) -> NDArray[np.float64]:
        prior = self.rating_prior()
        return bayesian_ratings(self.rating, self.votes, prior.votes, prior.mean)

    def popularity_prior(self) -> NDArray[np.float64]:
        """How widely known each movie is, in [0, 1]: log vote count over the catalog's max."""
        votes = np.log1p(np.nan_to_num(self.votes, nan=0.0))
        top = float(votes[self.alive].max()) if self.alive.any() else 0.0
        return votes / top if top > 0 else votes

    def keyword_scores(self, text: str, params: Bm25Params = DEFAULT_BM25) -> NDArray[np.float32]:
        scores = self.keyword.scores(text, params)
        return scores[: self._capacity] if len(scores) >= self._capacity else _pad(scores, self)

    def keyword_top(
        self,
        text: str,
        k: int,
        keep: NDArray[np.bool_],
        params: Bm25Params = DEFAULT_BM25,
    ) -> list[tuple[int, float]]:
        """(tmdb id, BM25F score) of the best ``k`` matching rows among ``keep``."""
        scores = self.keyword_scores(text, params)
        scores = np.where(keep & (scores > 0), scores, 0.0)
        n = int(np.count_nonzero(scores))
        if n == 0:
            return []
        k = min(k, n)
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((self.tmdb_ids[part], -scores[part]))]
        return [(int(self.tmdb_ids[r]), float(scores[r])) for r in order]


def _pad(scores: NDArray[np.float32], mirror: CatalogMirror) -> NDArray[np.float32]:
    padded = np.zeros(len(mirror.alive), np.float32)
    padded[: len(scores)] = scores
    return padded
