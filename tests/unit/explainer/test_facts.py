"""Facts computed from catalog records, nearest liked movies and the confidence."""

from __future__ import annotations

import pytest

from marquee_explainer.facts import decade, fact_mentioned, query_decades, stem
from marquee_shared.api import Fact
from tests.support.explainer_catalog import (
    ALIEN,
    DUEL,
    JAWS,
    JAWS_2,
    MANHUNTER,
    TOY_STORY,
    ZODIAC,
    make_search,
    make_taste,
)


def facts_of(ctx) -> set[tuple[str, str, tuple[int, ...]]]:
    return {(f.kind, f.value, tuple(f.movie_ids)) for f in ctx.facts}


def test_shared_facts_between_the_target_and_the_liked_movies(index):
    ctx = make_taste(index, target=DUEL, liked=[JAWS, ALIEN])
    found = facts_of(ctx)
    assert ("director", "Steven Spielberg", (578,)) in found
    assert ("theme", "based on novel or book", (578,)) in found
    assert ("genre", "Thriller", (578,)) in found
    assert ("decade", "1970s", (578, 348)) in found
    # Strongest first: a shared director before a shared genre.
    assert ctx.facts[0].kind == "director"


def test_overview_words_become_themes_when_distinctive(index):
    ctx = make_taste(index, target=JAWS_2, liked=[JAWS])
    themes = {f.value for f in ctx.facts if f.kind == "theme"}
    assert "shark" in themes  # a shared keyword
    assert {"swimmers", "terrorizes"} & themes  # shared overview words
    assert not {"the", "great", "off", "another"} & themes


def test_nearest_liked_movies_come_from_the_stored_vectors(index):
    ctx = make_taste(index, target=JAWS_2, liked=[ALIEN, DUEL, JAWS])
    assert [n.movie.tmdb_id for n in ctx.neighbours] == [578, 839, 348]
    assert ctx.neighbours[0].similarity > 0.9
    assert [m.tmdb_id for m in ctx.taste_block] == [348, 839, 578]  # the taste's own order


def test_confidence(index):
    assert make_taste(index, target=JAWS_2, liked=[JAWS]).confidence == "high"
    assert make_taste(index, target=TOY_STORY, liked=[JAWS]).confidence == "low"
    # Closer to a disliked movie than to any liked one: one level down.
    lowered = make_taste(index, target=JAWS_2, liked=[ALIEN], disliked=[JAWS])
    plain = make_taste(index, target=JAWS_2, liked=[ALIEN])
    levels = ["low", "medium", "high"]
    assert levels.index(lowered.confidence) < levels.index(plain.confidence) or (
        plain.confidence == "low"
    )
    assert make_taste(index, target=JAWS_2, liked=[]).confidence == "low"


@pytest.mark.parametrize(
    ("query", "decades"),
    [
        ("dark like zodiac but 80s", {"1980s"}),
        ("a 1980s thriller", {"1980s"}),
        ("something from the '70s", {"1970s"}),
        ("released in 1986", {"1980s"}),
        ("the 00s and the 10s", {"2000s", "2010s"}),
        ("80 minutes", set()),
    ],
)
def test_decades_in_queries(query, decades):
    assert query_decades(query) == decades


def test_query_facts(index):
    ctx = make_search(index, "serial killer thriller like zodiac but 80s", MANHUNTER, [ZODIAC])
    found = facts_of(ctx)
    assert ("decade", "1980s", (11454,)) in found
    assert ("genre", "Thriller", (11454,)) in found
    assert ("query", "serial", (11454,)) in found
    assert ("theme", "serial killer", (1949,)) in found
    # The named movie's title is not a query term the hit "matches".
    assert not any(v == "zodiac" for _, v, _ in found)
    assert ctx.confidence == "high"


def test_fact_mentions_are_loose_where_language_is():
    assert fact_mentioned(
        Fact(kind="director", value="Steven Spielberg", movie_ids=[1]), "a Spielberg film"
    )
    assert fact_mentioned(
        Fact(kind="genre", value="Science Fiction", movie_ids=[1]), "great sci-fi"
    )
    assert fact_mentioned(Fact(kind="decade", value="1980s", movie_ids=[1]), "an '80s gem")
    assert fact_mentioned(Fact(kind="decade", value="1970s", movie_ids=[1]), "a seventies film")
    assert fact_mentioned(
        Fact(kind="theme", value="based on true story", movie_ids=[1]), "based on a true story"
    )
    assert fact_mentioned(Fact(kind="theme", value="shark", movie_ids=[1]), "two sharks")
    assert not fact_mentioned(Fact(kind="cast", value="Roy Scheider", movie_ids=[1]), "Roy Orbison")


def test_small_helpers():
    assert decade(1975) == "1970s"
    assert decade(None) is None
    assert stem("sharks") == stem("shark")
    assert stem("mysteries") == "mystery"
    assert stem("glass") == "glass"
