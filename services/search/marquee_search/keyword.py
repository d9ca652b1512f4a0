"""An in-process BM25F keyword index that follows upserts and deletes one movie at a time.

BM25F (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009):
a term's frequency is length-normalised per field, then the fields are summed with weights,
then saturated once. A title word is worth more than the same word deep in an overview, and a
long overview does not drown a short title.

Layout: one posting array per term (rows as int32, per-field counts as uint8), so a query is a
few vectorised numpy operations per term even for the long "tip of my tongue" questions. The
length normalisation is applied at query time, so k1, b and the field weights can change without
touching the index. Typo tolerance: a query term the index has never seen is replaced by the
closest title and name terms within a small edit distance (optimal string alignment, so a
swapped pair of letters costs one edit: ``knigth`` -> ``knight``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from marquee_search.text import fold, stem, words

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from numpy.typing import NDArray

    from marquee_shared.events import Movie

FIELDS = ("title", "original_title", "cast", "directors", "keywords", "overview")
NAME_FIELDS = frozenset({"title", "original_title", "cast", "directors"})
"""Fields whose words are the ones people misspell and the typo tolerance corrects towards."""
MAX_TF = 255


def movie_fields(movie: Movie) -> dict[str, str]:
    """The text of each indexed field of a movie."""
    original = movie.original_title if movie.original_title != movie.title else None
    overview = " ".join(t for t in (movie.tagline, movie.overview) if t)
    return {
        "title": movie.title,
        # Indexed only when it differs: an identical copy would count every title word twice.
        "original_title": original or "",
        "cast": " ".join(movie.cast),
        "directors": " ".join(movie.directors),
        "keywords": " ".join(movie.keywords),
        "overview": overview,
    }


@dataclass(frozen=True, slots=True)
class Bm25Params:
    """Scoring parameters (tuned on the tune split of tomt_dev, see bench/eval_search.py)."""

    k1: float = 1.2
    b: tuple[float, ...] = (0.3, 0.3, 0.3, 0.3, 0.5, 0.75)
    weights: tuple[float, ...] = (3.0, 2.0, 2.0, 2.5, 2.5, 1.0)
    fuzzy: bool = True
    fuzzy_weight: float = 0.5
    """A corrected term counts this much (less one tenth per edit) of an exact one."""
    max_query_terms: int = 256
    drop_chatter: bool = True
    """Ignore the words of asking (QUERY_CHATTER) in queries; they say nothing of the film."""
    title_bonus: float = 10.0
    """Added, scaled by similarity, to movies whose whole title is close to a short query."""
    title_min_similarity: float = 85.0
    title_max_words: int = 8


DEFAULT_BM25 = Bm25Params()


_CHATTER = """
    tomt movie movies film films remember remembered watched watch watching saw seen think
    thought anyone anybody help please thanks thank know knows recall title titled trying find
    looking something really maybe probably pretty sure kind one also ago years year scene
    scenes plot guy guys people ever got get thing things lot much still bit around back
    edit update solved found
"""
QUERY_CHATTER = frozenset(_CHATTER.split())
"""Words of people asking about a film ("I remember a movie where..."), not of the film."""


def max_edits(term: str) -> int:
    """Edits tolerated for a term of this length: none for short words (too many neighbours),
    one up to seven letters, two beyond."""
    if len(term) < 4 or term.isdigit():
        return 0
    return 1 if len(term) <= 7 else 2


@dataclass
class _Postings:
    rows: NDArray[np.int32]
    tf: NDArray[np.uint8]  # len(rows) x len(FIELDS)


def _empty_postings() -> _Postings:
    return _Postings(np.empty(0, np.int32), np.empty((0, len(FIELDS)), np.uint8))


@dataclass
class KeywordIndex:
    """BM25F over the rows that the catalog mirror assigns to movies.

    Not thread-safe: mutate and query it from one thread (the event loop), or build a fresh one
    elsewhere and swap it in whole.
    """

    capacity: int = 1024
    _postings: dict[str, _Postings] = field(default_factory=dict)
    _doc_terms: dict[int, list[str]] = field(default_factory=dict)
    _doc_names: dict[int, list[str]] = field(default_factory=dict)
    _titles: dict[int, str] = field(default_factory=dict)
    """Per row, the folded title for whole-title fuzzy matching."""
    _title_choices: tuple[list[int], list[str]] | None = None
    _title_memo: tuple[tuple[str, float], list[tuple[int, float]]] | None = None
    """Per row, the unstemmed words of its name fields (the fuzzy vocabulary's counts)."""
    _lengths: NDArray[np.float32] = field(init=False)
    _totals: NDArray[np.float64] = field(init=False)
    _name_df: Counter[str] = field(default_factory=Counter)
    _choices: dict[int, list[str]] | None = None
    _corrected: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lengths = np.zeros((self.capacity, len(FIELDS)), np.float32)
        self._totals = np.zeros(len(FIELDS), np.float64)

    def __len__(self) -> int:
        return len(self._doc_terms)

    @property
    def vocabulary_size(self) -> int:
        return len(self._postings)

    # -- writing ---------------------------------------------------------------------------

    def _ensure_capacity(self, row: int) -> None:
        if row < self.capacity:
            return
        capacity = max(row + 1, self.capacity * 2)
        lengths = np.zeros((capacity, len(FIELDS)), np.float32)
        lengths[: self.capacity] = self._lengths
        self._lengths, self.capacity = lengths, capacity

    @staticmethod
    def _analyse(fields: Mapping[str, str]) -> tuple[dict[str, list[int]], list[int], set[str]]:
        """Per-field term counts, field lengths, and the words of the name fields."""
        counts: dict[str, list[int]] = {}
        lengths = []
        names: set[str] = set()
        for column, name in enumerate(FIELDS):
            surface = words(fields.get(name, ""))
            tokens = [stem(w) for w in surface]
            lengths.append(len(tokens))
            if name in NAME_FIELDS:
                names.update(w for w in surface if w.isalpha())
            for term, n in Counter(tokens).items():
                counts.setdefault(term, [0] * len(FIELDS))[column] = min(n, MAX_TF)
        return counts, lengths, names

    def add(self, row: int, fields: Mapping[str, str]) -> None:
        """Index one movie's fields under ``row`` (replacing what the row held)."""
        if row in self._doc_terms:
            self.remove(row)
        self._ensure_capacity(row)
        counts, lengths, names = self._analyse(fields)
        for term, tf in counts.items():
            postings = self._postings.get(term) or _empty_postings()
            postings.rows = np.append(postings.rows, np.int32(row))
            postings.tf = np.vstack([postings.tf, np.asarray(tf, np.uint8)])
            self._postings[term] = postings
        self._count_names(names, +1)
        self._doc_terms[row] = list(counts)
        self._doc_names[row] = sorted(names)
        self._titles[row] = _title_key(fields)
        self._title_choices = None
        self._lengths[row] = lengths
        self._totals += lengths

    def bulk_add(self, docs: Iterable[tuple[int, Mapping[str, str]]]) -> None:
        """Index many movies at once into an empty index (one concatenation per term, not one
        per posting: building the whole catalog this way takes seconds, not minutes)."""
        assert not self._doc_terms, "bulk_add fills an empty index"
        self._title_choices = None
        rows_by_term: dict[str, list[int]] = {}
        tf_by_term: dict[str, list[list[int]]] = {}
        for row, fields in docs:
            self._ensure_capacity(row)
            counts, lengths, names = self._analyse(fields)
            for term, tf in counts.items():
                rows_by_term.setdefault(term, []).append(row)
                tf_by_term.setdefault(term, []).append(tf)
            self._name_df.update(names)
            self._doc_terms[row] = list(counts)
            self._doc_names[row] = sorted(names)
            self._titles[row] = _title_key(fields)
            self._lengths[row] = lengths
            self._totals += lengths
        for term, rows in rows_by_term.items():
            self._postings[term] = _Postings(
                np.asarray(rows, np.int32), np.asarray(tf_by_term[term], np.uint8)
            )

    def remove(self, row: int) -> None:
        terms = self._doc_terms.pop(row, None)
        if terms is None:
            return
        for term in terms:
            postings = self._postings[term]
            keep = postings.rows != row
            if keep.all():
                continue
            if not keep.any():
                del self._postings[term]
            else:
                postings.rows, postings.tf = postings.rows[keep], postings.tf[keep]
        self._count_names(set(self._doc_names.pop(row, [])), -1)
        self._titles.pop(row, None)
        self._title_choices = None
        self._totals -= self._lengths[row]
        self._lengths[row] = 0

    def _count_names(self, names: set[str], sign: int) -> None:
        for term in names:
            count = self._name_df[term] + sign
            if count > 0:
                self._name_df[term] = count
            else:
                del self._name_df[term]
            if count in {0, 1}:  # a name term appeared or vanished: the fuzzy vocabulary changed
                self._choices = None

    # -- reading ---------------------------------------------------------------------------

    def corrections(self, term: str, limit: int = 2) -> list[tuple[str, int]]:
        """Known title/name words within ``max_edits`` of an unknown word, closest first (the
        most common first among equally close ones)."""
        edits = max_edits(term)
        if not edits:
            return []
        if self._choices is None:
            # By length: a term within n edits differs in length by at most n, so only those
            # buckets are compared (several times faster than the whole vocabulary).
            self._choices = {}
            for name in sorted(self._name_df):
                self._choices.setdefault(len(name), []).append(name)
            self._corrected = {}
        cached = self._corrected.get(term)
        if cached is not None:
            return cached[:limit]
        found: list[tuple[str, int]] = []
        for size in range(len(term) - edits, len(term) + edits + 1):
            choices = self._choices.get(size, [])
            found += [
                (choice, int(distance))
                for choice, distance, _ in process.extract(
                    term, choices, scorer=OSA.distance, score_cutoff=edits, limit=limit
                )
            ]
        # Only the closest: a second-best at two edits is mostly noise next to a one-edit fix.
        closest = [c for c in found if c[1] == min(d for _, d in found)] if found else []
        closest.sort(key=lambda cd: (-self._name_df.get(cd[0], 0), cd[0]))
        if len(self._corrected) > 50_000:
            self._corrected.clear()
        self._corrected[term] = closest[:limit]
        return closest[:limit]

    def query_terms(self, text: str, params: Bm25Params = DEFAULT_BM25) -> list[tuple[str, float]]:
        """The index terms a query searches, with their weights (corrections weigh less)."""
        terms: dict[str, float] = {}
        for word in dict.fromkeys(words(text)):
            if len(terms) >= params.max_query_terms:
                break
            if params.drop_chatter and word in QUERY_CHATTER:
                continue
            term = stem(word)
            if term in self._postings:
                terms[term] = max(terms.get(term, 0.0), 1.0)
            elif params.fuzzy:
                for fixed, distance in self.corrections(word):
                    weight = params.fuzzy_weight - 0.1 * (distance - 1)
                    fixed_term = stem(fixed)
                    terms[fixed_term] = max(terms.get(fixed_term, 0.0), weight)
        return list(terms.items())

    def scores(self, text: str, params: Bm25Params = DEFAULT_BM25) -> NDArray[np.float32]:
        """BM25F score of every row for the query (0 where nothing matches)."""
        scores = np.zeros(self.capacity, np.float32)
        n_docs = len(self._doc_terms)
        if not n_docs:
            return scores
        average = np.maximum(self._totals / n_docs, 1e-6).astype(np.float32)
        b = np.asarray(params.b, np.float32)
        weights = np.asarray(params.weights, np.float32)
        for term, query_weight in self.query_terms(text, params):
            postings = self._postings[term]
            df = len(postings.rows)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            norm = 1.0 - b + b * self._lengths[postings.rows] / average
            pseudo_tf = (postings.tf / norm) @ weights
            scores[postings.rows] += (
                query_weight * idf * pseudo_tf * (params.k1 + 1) / (pseudo_tf + params.k1)
            )
        if params.title_bonus and len(text.split()) <= params.title_max_words:
            for row, similarity in self.title_matches(text, params.title_min_similarity):
                cutoff = params.title_min_similarity
                scores[row] += params.title_bonus * (similarity - cutoff + 1) / (101 - cutoff)
        return scores

    def field_scores(
        self, text: str, rows: NDArray[np.intp], params: Bm25Params = DEFAULT_BM25
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Per field, for each of ``rows`` (each len(rows) x len(FIELDS)): the BM25 score of
        the field scored alone (its own length normalisation and saturation), how many query
        terms it contains, and its length in terms. Features for the learned ranker: a title
        hit and a plot hit of equal BM25F mean different things, and a title whose every word
        is in the request differs from one sharing a word with it. Walks only the query's
        postings, as ``scores`` does, keeping the candidates' entries."""
        out = np.zeros((len(rows), len(FIELDS)), np.float32)
        matched = np.zeros((len(rows), len(FIELDS)), np.float32)
        n_docs = len(self._doc_terms)
        if not n_docs or not len(rows):
            return out, matched, np.zeros_like(out)
        lengths = self._lengths[rows]
        position = np.full(self.capacity, -1, np.int64)
        position[rows] = np.arange(len(rows))
        average = np.maximum(self._totals / n_docs, 1e-6).astype(np.float32)
        b = np.asarray(params.b, np.float32)
        for term, query_weight in self.query_terms(text, params):
            postings = self._postings[term]
            at = position[postings.rows]
            hit = at >= 0
            if not hit.any():
                continue
            df = len(postings.rows)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            kept = postings.rows[hit]
            tf = postings.tf[hit] / (1.0 - b + b * self._lengths[kept] / average)
            out[at[hit]] += query_weight * idf * tf * (params.k1 + 1) / (tf + params.k1)
            matched[at[hit]] += postings.tf[hit] > 0
        return out, matched, lengths

    def title_key(self, row: int) -> str:
        """The row's title as whole-title matching compares it (folded, spaces collapsed)."""
        return self._titles.get(row, "")

    def title_matches(self, text: str, min_similarity: float) -> list[tuple[int, float]]:
        """Rows whose title is close to the whole query as typed (``the dark knigth`` is
        closer to The Dark Knight than to The Dark Knight Rises), most similar first."""
        if self._title_choices is None:
            rows = sorted(self._titles)
            self._title_choices = (rows, [self._titles[r] for r in rows])
            self._title_memo = None
        key = (text, min_similarity)
        if self._title_memo is not None and self._title_memo[0] == key:
            # The same request asked twice in a row (its score, then its kind): one scan.
            return self._title_memo[1]
        rows, titles = self._title_choices
        matches = process.extract(
            " ".join(fold(text).split()),
            titles,
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=min_similarity,
            limit=20,
        )
        found = [(rows[i], float(similarity)) for _, similarity, i in matches]
        self._title_memo = (key, found)
        return found


def _title_key(fields: Mapping[str, str]) -> str:
    return " ".join(fold(fields.get("title", "")).split())
