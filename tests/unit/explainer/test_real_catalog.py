"""The title check against the real catalog (15.8k titles, many of them ordinary words): the
deterministic fallback must always pass it, and planted references must not."""

from __future__ import annotations

import random

import pytest

from marquee_explainer.deterministic import deterministic_draft
from marquee_explainer.titles import TitleIndex
from marquee_explainer.validation import Draft, validate
from marquee_ingest.sources import read_catalog_csv
from marquee_shared.events import Movie
from tests.support.explainer_catalog import make_taste

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def real(catalog_csv) -> tuple[list[Movie], TitleIndex]:
    movies = [m for m in read_catalog_csv(catalog_csv) if isinstance(m, Movie)]
    index = TitleIndex.build(((m.tmdb_id, m.title) for m in movies), (m.overview for m in movies))
    return movies, index


def test_the_fallback_always_passes_against_the_whole_catalog(real):
    movies, index = real
    rng = random.Random(3)
    for _ in range(150):
        target, *liked = rng.sample(movies, 6)
        ctx = make_taste(index, target=target, liked=liked)
        verdict = validate(deterministic_draft(ctx), ctx, index)
        assert verdict.ok, (verdict.problems, verdict.text)


def test_references_to_other_catalog_films_are_caught(real):
    movies, index = real
    by_title = {m.title: m for m in movies}
    target, liked = by_title["Jaws"], [by_title["Alien"]]
    ctx = make_taste(index, target=target, liked=liked)
    for text in (
        "Since you loved The Dark Knight Rises, [[578]] is for you.",
        "Like Heat, [[578]] is tense.",
        "Fans of Gladiator will like [[578]].",
        "[[578]] is the Psycho of the sea.",
    ):
        assert not validate(Draft(text), ctx, index).ok, text
    for text in (
        "It is a horror film from the 1970s, like [[348]]; [[578]] deals with a shark.",
        "Steven Spielberg directed [[578]], a thriller set on an island in the heat of summer.",
    ):
        verdict = validate(Draft(text), ctx, index)
        assert not any("not in <catalog_data>" in p for p in verdict.problems), verdict.problems
