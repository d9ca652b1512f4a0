"""Tokenisation, BM25F scoring, typo tolerance and the catalog mirror's filters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marquee_search.catalog import CatalogMirror, bayesian_ratings
from marquee_search.engine import build_where, metadata_passes
from marquee_search.keyword import Bm25Params, KeywordIndex, max_edits, movie_fields
from marquee_search.text import fold, tokenize, words
from marquee_shared.api import MovieFilters
from marquee_shared.index import movie_metadata
from tests.support.movies import movie


def test_tokenize_folds_accents_drops_stop_words_and_stems():
    assert tokenize("The Sharks of Amélie's café") == ["shark", "ameli", "cafe"]
    assert tokenize("Don't look now") == ["look"]  # "dont" is a stop word once folded
    assert words("Sharks RUNNING") == ["sharks", "running"]
    assert fold("ÉLÉONORE") == "eleonore"
    assert tokenize("") == []
    assert tokenize("千と千尋の神隠し") == ["千と千尋の神隠し"]  # other scripts stay words


def one_field_index(docs: dict[int, str], field: str = "overview") -> KeywordIndex:
    index = KeywordIndex(capacity=8)
    for row, text in docs.items():
        index.add(row, {field: text})
    return index


def test_bm25_matches_the_textbook_formula_for_one_field():
    index = one_field_index({0: "shark shark beach", 1: "beach town", 2: "a quiet town"})
    params = Bm25Params(k1=1.2, b=(0.75,) * 6, weights=(1.0,) * 6, title_bonus=0)
    scores = index.scores("shark", params)
    n, df, avgdl = 3, 1, (3 + 2 + 2) / 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    tf, dl = 2, 3
    expected = idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
    assert scores[0] == pytest.approx(expected, rel=1e-5)
    assert scores[1] == scores[2] == 0


def test_rarer_terms_and_weightier_fields_score_higher():
    index = KeywordIndex(capacity=8)
    index.add(0, {"title": "Jaws", "overview": "a shark in a beach town"})
    index.add(1, {"title": "Beach Party", "overview": "jaws drop at the town party"})
    index.add(2, {"title": "Town", "overview": "a town"})
    scores = index.scores("jaws")
    assert scores[0] > scores[1] > 0  # the same word counts more in a title
    scores = index.scores("shark town")
    assert scores[0] > scores[2]  # "shark" (one movie) outweighs "town" (three)


def test_unknown_words_are_corrected_towards_titles_and_names():
    index = KeywordIndex(capacity=8)
    index.add(0, {"title": "The Shining", "directors": "Stanley Kubrick"})
    index.add(1, {"title": "Shine", "overview": "a pianist"})
    index.add(2, {"title": "Other", "overview": "kubrik is not a name here but an overview word"})
    # A swapped pair is one edit (optimal string alignment), and it is the unstemmed word that
    # is compared: "shinign" is one edit from "shining", two from its stem "shine".
    assert index.corrections("shinign") == [("shining", 1)]
    terms = dict(index.query_terms("the shinign"))
    assert terms == {"shine": pytest.approx(Bm25Params().fuzzy_weight)}
    # A known word is never "corrected", even if it is close to a name.
    assert dict(index.query_terms("kubrik")) == {"kubrik": 1.0}
    # Short words get no correction (too many neighbours); long ones get two edits.
    assert max_edits("jaw") == 0
    assert max_edits("jaws") == 1
    assert max_edits("villeneuve") == 2
    assert index.corrections("stanly") == [("stanley", 1)]
    assert index.corrections("xyzzy") == []
    no_fuzz = Bm25Params(fuzzy=False)
    assert index.query_terms("the shinign", no_fuzz) == []


def test_whole_title_similarity_lifts_the_exact_title():
    index = KeywordIndex(capacity=8)
    index.add(0, {"title": "The Dark Knight Rises", "overview": "the dark knight returns"})
    index.add(1, {"title": "The Dark Knight"})
    scores = index.scores("the dark knigth")
    assert scores[1] > scores[0]
    long_query = "the dark knigth " + "word " * 10
    plain = index.scores(long_query, Bm25Params(title_bonus=0))
    assert np.allclose(index.scores(long_query), plain)  # only short queries are titles


def test_removing_and_replacing_a_document_updates_every_statistic():
    index = KeywordIndex(capacity=2)
    index.add(0, {"title": "Zorblax", "overview": "alien paperwork"})
    index.add(5, {"title": "Other", "overview": "alien"})  # grows beyond its capacity
    assert len(index) == 2
    assert index.scores("zorblax")[0] > 0
    index.add(0, {"title": "Glimmerhorn", "overview": "alien paperwork"})
    assert index.scores("zorblax").max() == 0
    assert index.corrections("zorblx") == []  # the old title left the fuzzy vocabulary too
    assert index.scores("glimmerhorn")[0] > 0
    index.remove(0)
    index.remove(0)  # idempotent
    assert len(index) == 1
    assert index.scores("glimmerhorn").max() == 0
    assert index.scores("paperwork").max() == 0
    assert index.scores("alien")[5] > 0


def test_bulk_add_scores_like_one_by_one():
    docs = {
        i: movie_fields(movie(i + 1, f"Title {w}", overview=f"{w} and {w} meet", cast=["Ann Lee"]))
        for i, w in enumerate(["sharks", "ghosts", "robots", "sharks"])
    }
    one = KeywordIndex(capacity=4)
    for row, fields in docs.items():
        one.add(row, fields)
    bulk = KeywordIndex(capacity=4)
    bulk.bulk_add(docs.items())
    for q in ("sharks", "ann lee robots", "ghosst"):
        assert np.allclose(one.scores(q), bulk.scores(q))


def test_original_title_is_indexed_only_when_it_differs():
    assert movie_fields(movie(1, "Amélie", original_title="Amélie"))["original_title"] == ""
    fields = movie_fields(
        movie(2, "Spirited Away", original_title="千と千尋の神隠し", tagline="Lost")
    )
    assert fields["original_title"] == "千と千尋の神隠し"
    assert fields["overview"] == "Lost"


MOVIES = [
    movie(1, "A", year=1980, genres=["Horror"], vote_average=7.0, vote_count=100,
          original_language="en", popularity=5.0),
    movie(2, "B", year=1995, genres=["Comedy", "Music"], vote_average=8.0, vote_count=10,
          original_language="fr", popularity=50.0),
    movie(3, "C", genres=["Horror", "Comedy"], vote_average=None, vote_count=0,
          original_language="en"),
    movie(4, "D", year=2010, genres=[], vote_average=6.0, vote_count=5000,
          original_language="ja", popularity=9.0),
]  # fmt: skip

FILTERS = [
    MovieFilters(),
    MovieFilters(genres=["Horror"]),
    MovieFilters(genres=["Comedy", "Music"]),
    MovieFilters(genres=["Western"]),
    MovieFilters(year_min=1990),
    MovieFilters(year_max=1990),
    MovieFilters(min_rating=7.5),
    MovieFilters(min_votes=50),
    MovieFilters(language="en"),
    MovieFilters(language="de"),
    MovieFilters(genres=["Horror"], year_min=1970, min_rating=6, language="en"),
]


@pytest.mark.parametrize("filters", FILTERS)
def test_mirror_filters_agree_with_the_where_clause_semantics(filters):
    from datetime import UTC, datetime

    mirror = CatalogMirror(capacity=2)
    mirror.bulk_load((m, m.content_hash()) for m in MOVIES)
    kept_rows = {int(mirror.tmdb_ids[r]) for r in np.flatnonzero(mirror.mask(filters))}
    now = datetime.now(UTC)
    by_metadata = {
        m.tmdb_id for m in MOVIES if metadata_passes(filters, movie_metadata(m, occurred_at=now))
    }
    assert kept_rows == by_metadata
    # And both follow the where clause's rules: a missing value fails its filter.
    if filters.year_min is not None:
        assert 3 not in kept_rows
    assert (build_where(filters) is None) == filters.is_empty()


def test_the_vote_count_filter_reaches_chroma():
    assert build_where(MovieFilters(min_votes=50)) == {"vote_count": {"$gte": 50}}


def test_mirror_upserts_deletes_and_excludes():
    mirror = CatalogMirror(capacity=1)
    for m in MOVIES:
        mirror.upsert(m, m.content_hash())
    assert len(mirror) == 4
    assert mirror.count(MovieFilters(genres=["Horror"])) == 2
    assert mirror.delete(1)
    assert not mirror.delete(1)
    assert 1 not in mirror
    assert mirror.count(MovieFilters(genres=["Horror"])) == 1
    keep = mirror.mask(MovieFilters(), exclude=[2, 999])
    assert {int(mirror.tmdb_ids[r]) for r in np.flatnonzero(keep)} == {3, 4}
    assert mirror.top(mirror.popularity, mirror.mask(MovieFilters()), 5) == [2, 4]  # NaN out
    changed = MOVIES[1].model_copy(update={"title": "Bee"})
    mirror.upsert(changed, "new-hash")
    assert mirror.content_hash(2) == "new-hash"
    assert len(mirror) == 3


def test_bayesian_rating_needs_votes_to_win():
    ratings = np.asarray([10.0, 8.5, 7.0, np.nan])
    votes = np.asarray([3.0, 20_000.0, 500.0, np.nan])
    weighted = bayesian_ratings(ratings, votes, prior_votes=300, prior=6.5)
    assert weighted[1] > weighted[0]  # 8.5 from 20,000 beats 10 from 3
    assert weighted[0] == pytest.approx((3 * 10 + 300 * 6.5) / 303)
    assert weighted[3] == pytest.approx(6.5)  # no votes: the prior
    assert weighted[1] == pytest.approx(8.5, abs=0.05)


def test_rating_prior_adapts_to_the_catalog():
    mirror = CatalogMirror()
    mirror.bulk_load((m, m.content_hash()) for m in MOVIES)
    prior = mirror.rating_prior()
    assert prior.votes == 100  # the median of 100, 10 and 5000 vote counts
    assert 6.0 < prior.mean < 7.0  # vote-weighted: the 5000-vote 6.0 dominates
    assert CatalogMirror().rating_prior().votes == 10
