"""A small catalog and explanation contexts for the explainer's pure logic (no servers):
Spielberg films, a documentary that names them, look-alike titles, and 4-d vectors."""

from __future__ import annotations

import numpy as np

from marquee_explainer.catalog import MovieRecord
from marquee_explainer.context import ExplainContext, search_hit_context, taste_context
from marquee_explainer.titles import TitleIndex
from marquee_shared.events import Movie
from tests.support.movies import movie

JAWS = movie(
    578,
    "Jaws",
    1975,
    genres=["Horror", "Thriller", "Adventure"],
    directors=["Steven Spielberg"],
    cast=["Roy Scheider", "Robert Shaw"],
    keywords=["shark", "island", "based on novel or book"],
    overview="A great white shark terrorizes swimmers off a resort island.",
)
JAWS_2 = movie(
    579,
    "Jaws 2",
    1978,
    genres=["Horror", "Thriller"],
    directors=["Jeannot Szwarc"],
    cast=["Roy Scheider", "Lorraine Gary"],
    keywords=["shark", "sequel"],
    overview="Another great white shark terrorizes swimmers near the island's beach.",
)
DUEL = movie(
    839,
    "Duel",
    1971,
    genres=["Thriller", "TV Movie"],
    directors=["Steven Spielberg"],
    cast=["Dennis Weaver"],
    keywords=["truck", "highway", "based on novel or book"],
    overview="A salesman on a lonely highway is hunted by the unseen driver of a tanker truck.",
)
ALIEN = movie(
    348,
    "Alien",
    1979,
    genres=["Horror", "Science Fiction"],
    directors=["Ridley Scott"],
    cast=["Sigourney Weaver"],
    keywords=["spacecraft", "monster"],
    overview="The crew of a space tug is hunted by a creature.",
)
TOY_STORY = movie(
    862,
    "Toy Story",
    1995,
    genres=["Animation", "Comedy", "Family"],
    directors=["John Lasseter"],
    cast=["Tom Hanks"],
    keywords=["toy"],
    overview="A cowboy doll is jealous of a space ranger toy.",
)
SPIELBERG_DOC = movie(513574, "Spielberg", 2017, genres=["Documentary"])
HEAT = movie(949, "Heat", 1995, genres=["Crime"])
DARK_KNIGHT_RISES = movie(49026, "The Dark Knight Rises", 2012, genres=["Action"])
ZODIAC = movie(
    1949,
    "Zodiac",
    2007,
    genres=["Crime", "Mystery", "Thriller"],
    directors=["David Fincher"],
    keywords=["serial killer", "investigation"],
    overview="A cartoonist hunts the serial killer who taunts police with cryptic letters.",
)
MANHUNTER = movie(
    11454,
    "Manhunter",
    1986,
    genres=["Crime", "Thriller"],
    directors=["Michael Mann"],
    keywords=["serial killer", "fbi", "investigation"],
    overview="A former FBI profiler hunts a serial killer who murders families.",
)
CATALOG = [
    JAWS,
    JAWS_2,
    DUEL,
    ALIEN,
    TOY_STORY,
    SPIELBERG_DOC,
    HEAT,
    DARK_KNIGHT_RISES,
    ZODIAC,
    MANHUNTER,
]

# Directions in a 4-d space, so similarities are known: Jaws 2 is nearest Jaws, then Duel.
VECTORS = {
    578: [1.0, 0.1, 0.0, 0.0],
    579: [0.9, 0.2, 0.1, 0.0],
    839: [0.5, 0.5, 0.3, 0.0],
    348: [0.2, 0.9, 0.1, 0.0],
    862: [0.0, 0.0, 0.2, 1.0],
}


def record(m: Movie) -> MovieRecord:
    vector = np.asarray(VECTORS.get(m.tmdb_id, [0.1, 0.1, 0.1, 0.1]), dtype=np.float32)
    return MovieRecord(m, m.content_hash(), vector)


def make_taste(
    index: TitleIndex,
    target: Movie = JAWS_2,
    liked: list[Movie] | None = None,
    disliked: list[Movie] | None = None,
) -> ExplainContext:
    return taste_context(
        record(target),
        [record(m) for m in (liked if liked is not None else [ALIEN, JAWS, DUEL])],
        [record(m) for m in (disliked or [])],
        index,
        nearest=5,
        taste_block=8,
    )


def make_search(index: TitleIndex, query: str, target: Movie, named: list[Movie]) -> ExplainContext:
    return search_hit_context(query, record(target), [record(m) for m in named], index)
