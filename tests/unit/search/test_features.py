"""The learned ranker's features: what a request says about the film, checked against each
candidate's year, genres and language, beside the retrieval signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marquee_search.catalog import CatalogMirror
from marquee_search.features import (
    FEATURE_NAMES,
    FEATURES,
    CandidateSignals,
    candidate_features,
    parse_request,
)
from marquee_shared.events import Movie
from tests.support.movies import movie as support_movie


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("a movie from the late 90s", ((1996, 1999),)),
        ("an 80s cartoon", ((1980, 1989),)),
        ("from the 1970s", ((1970, 1979),)),
        ("the '60s", ((1960, 1969),)),
        ("early 2000s horror", ((2000, 2003),)),
        ("mid-2010s", ((2013, 2016),)),
        ("[late 90s-early 2000] dark movie", ((1996, 1999), (2000, 2003), (2000, 2000))),
        ("when I was a kid in 2005", ((2005, 2005),)),
        ("a ship with 1500 people", ()),
        ("he won $1990 in a bet", ()),
    ],
)
def test_years_and_decades(text: str, years: tuple[tuple[int, int], ...]) -> None:
    assert parse_request(text).years == years


def test_genre_medium_language_and_era_cues() -> None:
    cues = parse_request(
        "I think it was an animated Korean sci-fi film, black and white, maybe a classic"
    )
    assert cues.genres == {"Animation", "Science Fiction"}
    assert cues.languages == {"ko"}
    assert cues.black_and_white
    assert cues.old
    assert cues.hedges == 2  # "i think", "maybe"
    assert not parse_request("a shark attacks a beach town").genres
    assert parse_request("an anime about a girl").languages == {"ja"}
    assert parse_request("a foreign film with subtitles").foreign


def movie(tmdb_id: int, title: str, year: int, genres: list[str], language: str) -> Movie:
    return support_movie(
        tmdb_id,
        title,
        year,
        genres=genres,
        original_language=language,
        overview=f"The story of {title}.",
        vote_count=100 * tmdb_id,
        vote_average=7.0,
        popularity=float(tmdb_id),
    )


@pytest.fixture
def mirror() -> CatalogMirror:
    m = CatalogMirror()
    m.bulk_load(
        [
            (movie(1, "Spirited Away", 2001, ["Animation", "Fantasy"], "ja"), "h1"),
            (movie(2, "The Host", 2006, ["Horror", "Science Fiction"], "ko"), "h2"),
            (movie(3, "Metropolis", 1927, ["Drama", "Science Fiction"], "de"), "h3"),
        ]
    )
    return m


def features_for(mirror: CatalogMirror, text: str) -> np.ndarray:
    rows = np.asarray([mirror.row(i) for i in (1, 2, 3)], np.intp)
    signals = CandidateSignals(
        rows=rows,
        dense=np.asarray([0.5, 0.4, 0.3], np.float32),
        dense_head=np.asarray([0.5, 0.4, 0.3], np.float32),
        dense_max=np.asarray([0.6, 0.4, 0.3], np.float32),
        dense_mean=np.asarray([0.4, 0.4, 0.3], np.float32),
        bm25f=np.asarray([0.0, 2.0, 1.0], np.float32),
        fused=np.asarray([0.6, 0.5, 0.4], np.float32),
    )
    x = candidate_features(parse_request(text), signals, mirror, text)
    assert x.shape == (3, len(FEATURE_NAMES))
    return x


def column(x: np.ndarray, name: str) -> list[float]:
    return [float(v) for v in x[:, FEATURES[name]]]


def test_cues_are_checked_against_each_movie(mirror: CatalogMirror) -> None:
    x = features_for(mirror, "a korean monster horror movie from the mid 2000s")
    assert column(x, "language_match") == [0.0, 1.0, 0.0]
    assert column(x, "genre_matches") == [0.0, 1.0, 0.0]
    assert column(x, "year_gap") == [-2.0, 0.0, -76.0]  # 2003-2006 mentioned
    assert column(x, "cue_year") == [1.0] * 3


def test_no_cue_is_unknown_not_a_mismatch(mirror: CatalogMirror) -> None:
    x = features_for(mirror, "a girl works in a bathhouse for spirits")
    for name in ("language_match", "genre_matches", "year_gap", "black_and_white_era"):
        assert all(math.isnan(v) for v in column(x, name)), name


def test_silent_and_black_and_white_eras(mirror: CatalogMirror) -> None:
    x = features_for(mirror, "a black and white silent film about a robot woman in a city")
    assert column(x, "black_and_white_era") == [0.0, 0.0, 1.0]
    assert column(x, "silent_era") == [0.0, 0.0, 1.0]


def test_keyword_and_fusion_signals(mirror: CatalogMirror) -> None:
    x = features_for(mirror, "spirited away")
    assert column(x, "title_coverage")[0] == 1.0
    assert column(x, "title_coverage")[1] == 0.0
    assert column(x, "bm25_title")[0] > 0
    assert column(x, "title_similarity")[0] == 100.0
    assert column(x, "keyword_rank")[1] == 1.0
    assert math.isnan(column(x, "keyword_rank")[0])  # the keyword side did not find it
    assert column(x, "fused_rank") == [1.0, 2.0, 3.0]
    assert column(x, "dense_gap") == pytest.approx([0.0, -0.1, -0.2])
    assert column(x, "log_votes") == pytest.approx([math.log1p(v) for v in (100, 200, 300)])


def test_pseudo_relevance_feedback_needs_vectors(mirror: CatalogMirror) -> None:
    x = features_for(mirror, "spirited away")
    assert all(math.isnan(v) for v in column(x, "prf_top5"))  # no vectors: unknown
    rows = np.asarray([mirror.row(i) for i in (1, 2, 3)], np.intp)
    vectors = np.asarray([[1, 0], [0.8, 0.6], [0, 1]], np.float32)
    signals = CandidateSignals(
        rows=rows,
        dense=np.zeros(3, np.float32),
        dense_head=np.zeros(3, np.float32),
        dense_max=np.zeros(3, np.float32),
        dense_mean=np.zeros(3, np.float32),
        bm25f=np.zeros(3, np.float32),
        fused=np.asarray([0.6, 0.5, 0.4], np.float32),
        vectors=vectors,
    )
    x = candidate_features(parse_request("a bathhouse"), signals, mirror, "a bathhouse")
    prf = column(x, "prf_top5")  # the centre of all three: closest to the middle one
    assert prf[1] == max(prf)
    assert prf[0] > prf[2]
