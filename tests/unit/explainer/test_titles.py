"""Finding catalog titles in text: what counts as a mention of a film, and what does not."""

from __future__ import annotations

import pytest

from marquee_explainer.titles import Strictness, TitleIndex

TITLES = [
    (49026, "The Dark Knight Rises"),
    (949, "Heat"),
    (346364, "It"),
    (1271, "300"),
    (14160, "Up"),
    (348, "Alien"),
    (8077, "Alien vs. Predator"),
    (578, "Jaws"),
    (1091, "The Thing"),
    (1949, "Zodiac"),
    (3082, "Mr. Smith Goes to Washington"),
    (424, "Schindler's List"),
]
# Overviews that use "heat" and "thing" in lower case often enough to make them common words.
OVERVIEWS = ["the heat of the thing", "a heat wave, a strange thing", "heat and thing"] * 2


@pytest.fixture
def index() -> TitleIndex:
    return TitleIndex.build(TITLES, OVERVIEWS)


def spans(index: TitleIndex, text: str) -> list[str]:
    return [o.span for o in index.occurrences(text) if o.is_title_like()]


def test_strictness_follows_the_words(index):
    def strictness(title: str) -> Strictness:
        (occurrence,) = index.occurrences(title)
        return occurrence.entry.strictness

    assert strictness("The Dark Knight Rises") is Strictness.NORMAL
    assert strictness("Zodiac") is Strictness.NORMAL
    assert strictness("Heat") is Strictness.NEEDS_CAPITAL  # common in the overviews
    assert strictness("The Thing") is Strictness.NEEDS_CAPITAL
    assert strictness("300") is Strictness.WRITTEN_AS_TITLE
    assert strictness("Up") is Strictness.WRITTEN_AS_TITLE
    assert strictness("It") is Strictness.WRITTEN_AS_TITLE


def test_distinctive_titles_count_anywhere_with_their_capitals(index):
    assert spans(index, "Since you loved The Dark Knight Rises, try this.") == [
        "The Dark Knight Rises"
    ]
    assert spans(index, "Zodiac fans will like it.") == ["Zodiac"]
    # Lower case is a phrase, not the film.
    assert spans(index, "the dark knight rises again at dawn") == []


def test_common_word_titles_need_a_capital_that_is_not_sentence_initial(index):
    assert spans(index, "It feels the heat of the chase.") == []
    assert spans(index, "Heat is everywhere in this thriller.") == []
    assert spans(index, "Fans of Heat will like this.") == ["Heat"]
    assert spans(index, "Like The Thing, it is set in the snow.") == ["The Thing"]
    assert spans(index, "The thing is, it works.") == []


def test_numbers_and_tiny_titles_count_only_when_written_as_titles(index):
    assert spans(index, "It is 300 minutes long and It shows Up at the end.") == []
    assert spans(index, 'Like "It", it scares.') == ["It"]
    assert spans(index, "Like 300 (2006), it is loud.") == ["300"]
    assert spans(index, "Up (2009) made you cry.") == ["Up"]


def test_the_year_after_a_title_is_read(index):
    (occurrence,) = index.occurrences("Jaws (1976) is the one.")
    assert occurrence.year == 1976
    assert occurrence.written_as_title


def test_longest_title_wins_and_punctuation_inside_titles_is_kept(index):
    assert spans(index, "Alien vs. Predator is not Alien.") == ["Alien vs. Predator", "Alien"]
    assert spans(index, "Mr. Smith Goes to Washington is a classic.") == [
        "Mr. Smith Goes to Washington"
    ]
    # A sentence break where the title has none is two sentences, not a title.
    assert spans(index, "He liked Jaws. The Thing is next.") == ["Jaws", "The Thing"]


def test_possessives_and_apostrophes(index):
    assert spans(index, "Zodiac's killer was never caught.") == ["Zodiac"]
    assert spans(index, "Like Schindler's List, it is about history.") == ["Schindler's List"]


def test_ignore_case_is_for_queries(index):
    found = index.occurrences("dark like zodiac but in the 80s", ignore_case=True)
    assert [o.span for o in found] == ["zodiac"]


def test_titles_shared_by_several_movies_keep_every_id():
    index = TitleIndex.build([(1, "Dracula"), (2, "Dracula"), (3, "dracula")])
    assert index.ids_for("DRACULA") == {1, 2, 3}
    assert len(index) == 1
    index.add(4, "Nosferatu")
    assert index.ids_for("Nosferatu") == {4}
