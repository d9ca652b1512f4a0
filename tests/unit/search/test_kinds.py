"""Lookups told from descriptions (marquee_search.kinds) and fused with their own weight."""

from __future__ import annotations

import numpy as np

from marquee_search.hybrid import FusionParams, fuse
from marquee_search.keyword import KeywordIndex
from marquee_search.kinds import KindParams, classify


def index() -> KeywordIndex:
    idx = KeywordIndex(capacity=8)
    idx.add(
        0,
        {
            "title": "The Dark Knight",
            "directors": "Christopher Nolan",
            "cast": "Christian Bale Heath Ledger",
            "overview": "Batman faces the Joker, a criminal mastermind who wants chaos in Gotham.",
        },
    )
    idx.add(
        1,
        {
            "title": "Back to the Future",
            "directors": "Robert Zemeckis",
            "cast": "Michael J. Fox Christopher Lloyd",
            "overview": "A teenager is sent thirty years into the past in a time machine car.",
        },
    )
    idx.add(2, {"title": "Knight and Day", "overview": "A dark spy comedy about a knight."})
    return idx


def top_row(idx: KeywordIndex, text: str) -> int | None:
    scores = idx.scores(text)
    return int(np.argmax(scores)) if scores.max() > 0 else None


def test_a_title_as_typed_and_with_a_typo_is_a_lookup():
    idx = index()
    for text in ("the dark knight", "the dark knigth", "back to the futrue"):
        assert classify(idx, text, top_row(idx, text)) == "lookup", text


def test_a_full_name_in_the_best_hits_cast_or_director_is_a_lookup():
    idx = index()
    for text in ("christopher nolan thriller", "heath ledger movie"):
        assert classify(idx, text, top_row(idx, text)) == "lookup", text


def test_descriptions_stay_descriptions():
    idx = index()
    short = "teenager time machine car"  # plot words only: no title, no name
    assert classify(idx, short, top_row(idx, short)) == "description"
    # One word of a name is not a name ("christopher" alone names two people here).
    one = "christopher time travel"
    assert classify(idx, one, top_row(idx, one)) == "description"
    # Long requests are descriptions whatever they match.
    long = "the dark knight " + "with a scene where everyone is on a ferry at night"
    assert classify(idx, long, top_row(idx, long)) == "description"
    # No keyword match at all, or the feature off.
    assert classify(idx, "zzz", None) == "description"
    off = KindParams(enabled=False)
    assert classify(idx, "the dark knight", top_row(idx, "the dark knight"), off) == "description"


def test_thresholds_are_honoured():
    idx = index()
    typo = "the dark knigth"
    strict = KindParams(title_similarity=99.0, name_terms=99)
    assert classify(idx, typo, top_row(idx, typo), strict) == "description"
    assert classify(idx, "the dark knight", top_row(idx, "the dark knight"), strict) == "lookup"


def test_the_lookup_weight_lets_the_keyword_side_lead():
    # The dense side prefers film 2 a little; the keyword side is sure of film 1 (its title).
    dense = [(2, 0.62), (1, 0.55)]
    keyword = [(1, 12.0), (2, 3.0)]
    description = fuse(dense, keyword, FusionParams(alpha=0.95))
    lookup = fuse(dense, keyword, FusionParams(alpha=0.35))
    assert description[0][0] == 2
    assert lookup[0][0] == 1


def test_the_title_scan_is_shared_but_never_stale():
    idx = index()
    first = idx.title_matches("heat", 85.0)
    assert first == []
    assert idx.title_matches("heat", 85.0) is idx.title_matches("heat", 85.0)  # one scan
    idx.add(3, {"title": "Heat", "directors": "Michael Mann"})
    assert [row for row, _ in idx.title_matches("heat", 85.0)] == [3]
    idx.remove(3)
    assert idx.title_matches("heat", 85.0) == []
