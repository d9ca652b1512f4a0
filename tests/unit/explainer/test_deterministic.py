"""The deterministic explainer: specific sentences from the facts, always valid."""

from __future__ import annotations

import itertools

import pytest

from marquee_explainer.deterministic import deterministic_draft
from marquee_explainer.validation import validate
from tests.support.explainer_catalog import (
    ALIEN,
    CATALOG,
    DUEL,
    JAWS,
    JAWS_2,
    MANHUNTER,
    TOY_STORY,
    ZODIAC,
    make_search,
    make_taste,
)


def text_of(ctx, index) -> str:
    verdict = validate(deterministic_draft(ctx), ctx, index)
    assert verdict.ok, (verdict.problems, verdict.text)
    return verdict.text


def test_it_leads_with_the_nearest_liked_movies_and_the_strongest_facts(index):
    text = text_of(make_taste(index, target=DUEL, liked=[ALIEN, JAWS]), index)
    # Alien's stored vector is nearer Duel's than Jaws' is.
    assert text.startswith("Because you liked Alien (1979) and Jaws (1975), we picked Duel (1971).")
    assert "It is directed by Steven Spielberg, who also directed Jaws (1975)." in text
    assert "is based on a novel or book" in text
    assert "thriller film from the 1970s, like Jaws (1975)" in text


def test_shared_cast_and_themes(index):
    text = text_of(make_taste(index, target=JAWS_2, liked=[JAWS]), index)
    assert "Roy Scheider is in the cast, as in Jaws (1975)." in text
    assert "deals with shark" in text


def test_without_known_liked_movies_it_describes_the_film_alone(index):
    text = text_of(make_taste(index, target=JAWS, liked=[]), index)
    assert text.startswith(
        "Jaws (1975) is a horror and thriller film from the 1970s, directed by Steven Spielberg."
    )


def test_a_search_hit(index):
    ctx = make_search(index, "serial killer thriller like zodiac but 80s", MANHUNTER, [ZODIAC])
    text = text_of(ctx, index)
    assert text.startswith('Manhunter (1986) matches "serial" and "killer" from your search.')
    assert "from the 1980s" in text
    assert "Like Zodiac (2007), which you named, it deals with serial killer" in text
    ctx = make_search(index, "cozy knitting documentary", TOY_STORY, [])
    assert "shares no exact words" in text_of(ctx, index)


@pytest.mark.parametrize(
    ("target", "liked"),
    [
        (t, list(liked))
        for t in CATALOG
        for liked in itertools.combinations([m for m in CATALOG if m is not t], 2)
    ][::7],
)
def test_every_combination_validates(index, target, liked):
    text_of(make_taste(index, target=target, liked=liked), index)
