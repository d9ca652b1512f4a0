"""The explainer that needs no LLM: sentences built from the computed facts, in the order of
their strength. The default without an API key, and the fallback whenever Claude fails, times
out or cannot produce a valid answer. It writes ``[[id]]`` placeholders like the LLM does, so
its text passes the same validation."""

from __future__ import annotations

from collections.abc import Iterable

from marquee_explainer.context import ExplainContext
from marquee_explainer.facts import fact_mentioned
from marquee_explainer.validation import PLACEHOLDER, Draft, numbered_facts
from marquee_shared.api import Fact

VERSION = "d1"
"""Part of the cache key: a change of wording must not serve the old sentences."""

GENRE_WORDING = {"Animation": "animated", "Science Fiction": "science fiction", "TV Movie": "TV"}


def deterministic_draft(ctx: ExplainContext) -> Draft:
    sentences = _taste(ctx) if ctx.kind == "taste" else _search_hit(ctx)
    text = " ".join(s for s in sentences if s)
    refs = {id(f): ref for ref, f in numbered_facts(ctx.facts).items()}
    used = [refs[id(f)] for f in ctx.facts if id(f) in refs and fact_mentioned(f, text)]
    cited = [int(p) for p in PLACEHOLDER.findall(text)]
    return Draft(text=text, cited_ids=list(dict.fromkeys(cited)), fact_refs=used)


def ref(tmdb_id: int) -> str:
    return f"[[{tmdb_id}]]"


def _taste(ctx: ExplainContext) -> list[str]:
    target = ref(ctx.target.tmdb_id)
    if not ctx.neighbours:
        return [
            _about_target(ctx),
            "None of the movies you liked is in our catalog yet, so this rests on the film alone.",
        ]
    order = [n.movie.tmdb_id for n in ctx.neighbours]
    lead = _join([ref(i) for i in order[:2]])
    sentences = [f"Because you liked {lead}, we picked {target}."]
    facts = ctx.facts
    director = _first(facts, "director")
    if director:
        sentences.append(
            f"It is directed by {director.value}, who also directed {_movies(director, order)}."
        )
    cast = _first(facts, "cast")
    if cast:
        sentences.append(f"{cast.value} is in the cast, as in {_movies(cast, order)}.")
    themes = [f for f in facts if f.kind == "theme"]
    if themes:
        anchor = _nearest_of(themes[0], order)
        # Two at most: keywords come first, and a third is usually a weaker overview word.
        shared = [f.value for f in themes if anchor in f.movie_ids][:2]
        sentences.append(f"Like {ref(anchor)}, it {_theme_clause(shared)}.")
    sentences.append(_genre_and_decade(ctx, order))
    return sentences[:5]


def _genre_and_decade(ctx: ExplainContext, order: list[int]) -> str:
    genres = [f for f in ctx.facts if f.kind == "genre"]
    era = _first(ctx.facts, "decade")
    if genres:
        anchor = _nearest_of(genres[0], order)
        names = [f.value for f in genres if anchor in f.movie_ids][:2]
        decade = f" from the {era.value}" if era and anchor in era.movie_ids else ""
        return f"It is {_article(_genre_phrase(names))}{decade}, like {ref(anchor)}."
    if era:
        return f"Like {_movies(era, order)}, it comes from the {era.value}."
    return ""


def _search_hit(ctx: ExplainContext) -> list[str]:
    target = ref(ctx.target.tmdb_id)
    terms = [f.value for f in ctx.facts if f.kind == "query"]
    sentences = []
    if terms:
        quoted = _join([f'"{t}"' for t in terms[:4]])
        sentences.append(f"{target} matches {quoted} from your search.")
    else:
        sentences.append(
            f"{target} came up because its story is close to what you described, though it "
            "shares no exact words with your search."
        )
    mine = [f for f in ctx.facts if ctx.target.tmdb_id in f.movie_ids]
    genres = [f.value for f in mine if f.kind == "genre"]
    era = next((f.value for f in mine if f.kind == "decade"), None)
    if genres:
        era_part = f" from the {era}" if era else ""
        sentences.append(f"It is {_article(_genre_phrase(genres))}{era_part}, as you asked.")
    elif era:
        sentences.append(f"It is from the {era}, as you asked.")
    for kind, wording in (("director", "It is directed by {}."), ("cast", "{} is in the cast.")):
        fact = next((f for f in mine if f.kind == kind), None)
        if fact:
            sentences.append(wording.format(fact.value))
    named = [n.movie.tmdb_id for n in ctx.neighbours]
    for other in named[:2]:
        shared = [f for f in ctx.facts if other in f.movie_ids and f.kind != "query"]
        if shared:
            sentences.append(f"Like {ref(other)}, which you named, {_shared_clause(shared)}.")
    return sentences[:5]


def _shared_clause(facts: list[Fact]) -> str:
    best = facts[0]
    if best.kind == "director":
        return f"it is directed by {best.value}"
    if best.kind == "cast":
        return f"it stars {best.value}"
    if best.kind == "theme":
        return f"it {_theme_clause([f.value for f in facts if f.kind == 'theme'][:2])}"
    if best.kind == "genre":
        return f"it is {_article(_genre_phrase([f.value for f in facts if f.kind == 'genre'][:2]))}"
    return f"it comes from the {best.value}"


def _theme_clause(themes: list[str]) -> str:
    """TMDB keywords are either subjects ("shark", "time travel") or sources ("based on
    novel"): the two read differently."""
    sources = [t for t in themes if t.casefold().startswith("based on ")]
    subjects = [t for t in themes if t not in sources]
    clauses = []
    if sources:
        rest = sources[0][len("based on ") :]
        article = "" if rest.split()[0].casefold() in {"a", "an", "the"} else "a "
        clauses.append(f"is based on {article}{rest}")
    if subjects:
        clauses.append(f"deals with {_join(subjects)}")
    return " and ".join(clauses)


def _about_target(ctx: ExplainContext) -> str:
    movie = ctx.target
    what = _genre_phrase(movie.genres[:2]) if movie.genres else "film"
    era = f" from the {movie.year // 10 * 10}s" if movie.year else ""
    by = f", directed by {_join(movie.directors[:2])}" if movie.directors else ""
    return f"{ref(movie.tmdb_id)} is {_article(what)}{era}{by}."


def _genre_phrase(genres: list[str]) -> str:
    return _join([GENRE_WORDING.get(g, g.lower()) for g in genres]) + " film"


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _first(facts: Iterable[Fact], kind: str) -> Fact | None:
    return next((f for f in facts if f.kind == kind), None)


def _nearest_of(fact: Fact, order: list[int]) -> int:
    ranked = [i for i in order if i in fact.movie_ids]
    return ranked[0] if ranked else fact.movie_ids[0]


def _movies(fact: Fact, order: list[int]) -> str:
    ranked = [i for i in order if i in fact.movie_ids]
    ranked += [i for i in fact.movie_ids if i not in ranked]
    return _join([ref(i) for i in ranked[:2]])


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
