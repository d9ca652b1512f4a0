"""The checkable facts an explanation may rest on, computed from catalog records alone:
shared directors, cast, themes (TMDB keywords and distinctive overview words), genres and
decade between the target and the context movies, or between a search hit and its query.
Both generators draw on these, and the confidence is derived from them, never from an LLM.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from marquee_explainer.titles import BUILTIN_COMMON, WORD, TitleIndex
from marquee_shared.api import Confidence, Fact, FactKind
from marquee_shared.events import Movie

STRENGTH: dict[FactKind, int] = {
    "director": 5,
    "cast": 4,
    "theme": 3,
    "query": 3,
    "genre": 2,
    "decade": 1,
}
MAX_THEMES = 5
MAX_OVERVIEW_THEMES = 3
MAX_QUERY_TERMS = 6
# TMDB keywords that describe the release or the series, not what the film is about.
NOISE_KEYWORDS = frozenset(
    {"duringcreditsstinger", "aftercreditsstinger", "woman director", "imax", "3d", "sequel"}
)
QUERY_FILLER = frozenset(
    """
    film films movie movies something someone thing things story stories plot about where which
    whose want looking find show shows kind type sort lots bunch somebody guy guys
    """.split()  # noqa: SIM905 - a word list reads better as prose
)
GENRE_WORDS: dict[str, str] = {
    "action": "Action",
    "adventure": "Adventure",
    "animated": "Animation",
    "animation": "Animation",
    "cartoon": "Animation",
    "anime": "Animation",
    "comedy": "Comedy",
    "funny": "Comedy",
    "crime": "Crime",
    "documentary": "Documentary",
    "drama": "Drama",
    "family": "Family",
    "fantasy": "Fantasy",
    "historical": "History",
    "history": "History",
    "horror": "Horror",
    "scary": "Horror",
    "musical": "Music",
    "music": "Music",
    "mystery": "Mystery",
    "romance": "Romance",
    "romantic": "Romance",
    "scifi": "Science Fiction",
    "sci": "Science Fiction",
    "thriller": "Thriller",
    "war": "War",
    "western": "Western",
}
DECADE_IN_QUERY = re.compile(r"(?<![\w])['\u2019]?((?:19|20)?\d)0['\u2019]?s\b", re.IGNORECASE)
YEAR_IN_QUERY = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


def decade(year: int | None) -> str | None:
    return None if year is None else f"{year // 10 * 10}s"


def stem(word: str) -> str:
    """A light plural fold so "sharks" meets "shark"; enough for overview overlap."""
    w = word.casefold()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


@dataclass(frozen=True, slots=True)
class Neighbour:
    movie: Movie
    similarity: float


def shared_facts(target: Movie, others: Sequence[Movie], index: TitleIndex) -> list[Fact]:
    """What ``target`` has in common with each of ``others``, strongest facts first."""
    facts: list[Fact] = []

    def add(kind: FactKind, value: str, ids: list[int]) -> None:
        if ids:
            facts.append(Fact(kind=kind, value=value, movie_ids=ids))

    for name in target.directors:
        add("director", name, [m.tmdb_id for m in others if name in m.directors])
    for name in target.cast:
        add("cast", name, [m.tmdb_id for m in others if name in m.cast])
    themes = 0
    for keyword in target.keywords:
        if themes >= MAX_THEMES or keyword.casefold() in NOISE_KEYWORDS:
            continue
        ids = [m.tmdb_id for m in others if keyword.casefold() in _folded(m.keywords)]
        if ids:
            add("theme", keyword, ids)
            themes += 1
    room = min(MAX_OVERVIEW_THEMES, MAX_THEMES - themes)
    said = {stem(f.value) for f in facts}
    fresh = [(w, ids) for w, ids in _overview_themes(target, others, index) if stem(w) not in said]
    for word, ids in fresh[: max(0, room)]:
        add("theme", word, ids)
    for genre in target.genres:
        add("genre", genre, [m.tmdb_id for m in others if genre in m.genres])
    target_decade = decade(target.year)
    if target_decade:
        add("decade", target_decade, [m.tmdb_id for m in others if decade(m.year) == target_decade])
    return sort_facts(facts)


def sort_facts(facts: list[Fact]) -> list[Fact]:
    return sorted(facts, key=lambda f: (-STRENGTH[f.kind], -len(f.movie_ids)))


def _folded(values: Sequence[str]) -> set[str]:
    return {v.casefold() for v in values}


def content_words(text: str, index: TitleIndex) -> dict[str, str]:
    """Distinctive lower-case words of a text, by stem -> first surface form. Capitalised
    words are left out: they are names, which the people facts already cover."""
    words: dict[str, str] = {}
    for w in WORD.findall(text):
        if w.islower() and w.isalpha() and len(w) >= 4 and not index.is_common(w):
            words.setdefault(stem(w), w)
    return words


def _overview_themes(
    target: Movie, others: Sequence[Movie], index: TitleIndex
) -> list[tuple[str, list[int]]]:
    mine = content_words(f"{target.overview} {target.tagline or ''}", index)
    shared: dict[str, list[int]] = {}
    for other in others:
        theirs = content_words(f"{other.overview} {other.tagline or ''}", index)
        for key in mine.keys() & theirs.keys():
            shared.setdefault(key, []).append(other.tmdb_id)

    def rarity(key: str) -> float:
        # Rarer words in the catalog say more; words the catalog never saw rank first.
        df = index.document_frequency.get(mine[key], 0)
        return math.log((index.documents + 1) / (df + 1))

    ranked = sorted(shared, key=lambda k: (-len(shared[k]), -rarity(k), k))
    return [(mine[k], shared[k]) for k in ranked]


def query_facts(query: str, target: Movie, named: Sequence[Movie], index: TitleIndex) -> list[Fact]:
    """What in the query the hit satisfies, plus what it shares with movies the query names."""
    facts: list[Fact] = []
    me = [target.tmdb_id]
    haystack = " ".join(
        [
            target.title,
            target.overview,
            target.tagline or "",
            " ".join(target.keywords),
            " ".join(target.genres),
        ]
    )
    have = {stem(w) for w in WORD.findall(haystack)}
    named_words = {stem(w) for m in named for w in WORD.findall(m.title)}
    folded_query = query.casefold()
    genres_matched: set[str] = set()
    for word in WORD.findall(folded_query):
        genre = GENRE_WORDS.get(word)
        if genre and genre in target.genres and genre not in genres_matched:
            genres_matched.add(genre)
            facts.append(Fact(kind="genre", value=genre, movie_ids=me))
    if (
        "science fiction" in folded_query
        and "Science Fiction" in target.genres
        and "Science Fiction" not in genres_matched
    ):
        facts.append(Fact(kind="genre", value="Science Fiction", movie_ids=me))
    wanted = query_decades(query)
    if decade(target.year) in wanted:
        facts.append(Fact(kind="decade", value=decade(target.year) or "", movie_ids=me))
    people: tuple[tuple[FactKind, list[str]], ...] = (
        ("director", target.directors),
        ("cast", target.cast),
    )
    query_words = set(WORD.findall(folded_query))
    for kind, names in people:
        for name in names:
            last = name.split()[-1].casefold()
            if name.casefold() in folded_query or (len(last) > 3 and last in query_words):
                facts.append(Fact(kind=kind, value=name, movie_ids=me))
    terms = 0
    for word in dict.fromkeys(WORD.findall(folded_query)):
        if terms >= MAX_QUERY_TERMS:
            break
        if (
            len(word) < 3
            or word in BUILTIN_COMMON
            or word in QUERY_FILLER
            or word in GENRE_WORDS
            or stem(word) in named_words
        ):
            continue
        if stem(word) in have:
            facts.append(Fact(kind="query", value=word, movie_ids=me))
            terms += 1
    facts.extend(shared_facts(target, named, index))
    return sort_facts(_dedupe(facts))


def query_decades(query: str) -> set[str]:
    found: set[str] = set()
    for m in DECADE_IN_QUERY.finditer(query):
        digits = m.group(1)
        if len(digits) == 1:  # "80s": the last century from 3 up, this one below
            digits = ("19" if int(digits) >= 3 else "20") + digits
        found.add(f"{digits}0s")
    found.update(decade(int(y)) or "" for y in YEAR_IN_QUERY.findall(query))
    return found


def query_terms(query: str) -> list[str]:
    """The query's content words (what a hit could match)."""
    return [
        w
        for w in dict.fromkeys(WORD.findall(query.casefold()))
        if len(w) >= 3 and w not in BUILTIN_COMMON and w not in QUERY_FILLER
    ]


def _dedupe(facts: list[Fact]) -> list[Fact]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in facts:
        key = (f.kind, f.value.casefold())
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def taste_confidence(
    facts: Sequence[Fact], nearest: Sequence[Neighbour], disliked_best: float | None
) -> Confidence:
    if not nearest:
        return "low"
    best = nearest[0].similarity
    nearest_ids = {n.movie.tmdb_id for n in nearest[:2]}
    people = any(f.kind in {"director", "cast"} for f in facts)
    close_people = any(
        f.kind in {"director", "cast"} and nearest_ids & set(f.movie_ids) for f in facts
    )
    themed = any(f.kind == "theme" for f in facts)
    genres = sum(1 for f in facts if f.kind == "genre")
    level: Confidence
    if close_people or (best >= 0.55 and (themed or people)):
        level = "high"
    elif best >= 0.4 or themed or people or genres >= 2:
        level = "medium"
    else:
        level = "low"
    if disliked_best is not None and disliked_best > best:
        # Closer to something they disliked than to anything they liked: say so by degree.
        level = "medium" if level == "high" else "low"
    return level


def query_confidence(query: str, facts: Sequence[Fact]) -> Confidence:
    terms = query_terms(query)
    matched = {f.value.casefold() for f in facts if f.kind == "query"}
    covered = len(matched) + sum(1 for f in facts if f.kind in {"genre", "decade"} and f.movie_ids)
    people = any(f.kind in {"director", "cast"} for f in facts)
    share = covered / max(1, len(terms))
    if people or share >= 0.6:
        return "high"
    if share >= 0.3 or facts:
        return "medium"
    return "low"


DECADE_WORDS = {
    "1920s": "twenties",
    "1930s": "thirties",
    "1940s": "forties",
    "1950s": "fifties",
    "1960s": "sixties",
    "1970s": "seventies",
    "1980s": "eighties",
    "1990s": "nineties",
}


def fact_mentioned(fact: Fact, text: str) -> bool:
    """Whether the text states the fact (loosely: a surname, a genre's usual spelling)."""
    folded = text.casefold()
    value = fact.value.casefold()
    if value in folded:
        return True
    if fact.kind in {"director", "cast"}:
        last = value.split()[-1]
        return len(last) > 2 and re.search(rf"\b{re.escape(last)}\b", folded) is not None
    if fact.kind == "genre":
        aliases = {"science fiction": ("sci-fi", "scifi"), "animation": ("animated",)}
        return any(a in folded for a in aliases.get(value, ()))
    if fact.kind == "decade" and len(value) == 5:
        short = f"'{value[2:]}"
        word = DECADE_WORDS.get(value, "\0")
        return short in folded or f"\u2019{value[2:]}" in folded or word in folded
    if fact.kind in {"theme", "query"}:
        # Every word of it, in any form ("based on true story" in "based on a true story").
        said = {stem(w) for w in WORD.findall(folded)}
        words = [stem(w) for w in WORD.findall(value) if w not in {"a", "an", "the", "or"}]
        return bool(words) and all(w in said for w in words)
    return False
