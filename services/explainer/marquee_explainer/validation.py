"""The gate every explanation passes, whichever generator wrote it: nothing unvalidated
reaches a user.

A draft refers to movies as ``[[tmdb_id]]`` placeholders, which are rendered here as
"Title (Year)" from the context, so a title the generator wrote is never trusted. Then:

- every placeholder and every cited id must be a context movie;
- every catalog title found in the rendered text (marquee_explainer.titles) must be the title
  of a context movie, with the right year when one is written after it;
- every "(YYYY)" must follow the title of a context movie from that year (this also catches
  invented films the catalog has never heard of);
- the facts it declares must be among the computed ones, and the text must state at least one
  of them when there are any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from marquee_explainer.context import ExplainContext
from marquee_explainer.facts import fact_mentioned
from marquee_explainer.titles import QUOTES, Occurrence, TitleIndex, title_key
from marquee_shared.api import Fact

PLACEHOLDER = re.compile(r"\[\[\s*(\d{1,10})\s*\]\]")
YEAR_IN_PARENS = re.compile(r"\((\d{4})\)")
REPEATED_YEAR = re.compile(r"(\(\d{4}\))\s*\1")
MAX_TEXT_CHARS = 900
MIN_TEXT_CHARS = 20


@dataclass(frozen=True)
class Draft:
    """What a generator proposes: text with ``[[id]]`` placeholders, the ids it cites and the
    ids (``F1``...) of the facts it says it rests on."""

    text: str
    cited_ids: list[int] = field(default_factory=list)
    fact_refs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    text: str
    cited_ids: list[int]
    facts: list[Fact]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def numbered_facts(facts: list[Fact]) -> dict[str, Fact]:
    return {f"F{i}": fact for i, fact in enumerate(facts, start=1)}


def validate(draft: Draft, ctx: ExplainContext, index: TitleIndex) -> Verdict:
    problems: list[str] = []
    text, placeholder_ids = render(draft.text, ctx, problems)
    cited = list(dict.fromkeys([*placeholder_ids, *draft.cited_ids]))
    outside = [i for i in cited if i not in ctx.movies]
    if outside:
        problems.append(
            f"it cites {_ids(outside)}, which {'is' if len(outside) == 1 else 'are'} not among "
            f"the movies in <catalog_data> (allowed: {_ids(sorted(ctx.movies))})"
        )
    problems.extend(title_problems(text, ctx, index))
    facts, fact_problems = _declared_facts(draft, ctx, text)
    problems.extend(fact_problems)
    if len(text.strip()) < MIN_TEXT_CHARS:
        problems.append("the text is empty or too short")
    if len(text) > MAX_TEXT_CHARS:
        problems.append(f"the text is {len(text)} characters long; keep it under 600")
    return Verdict(
        text=text.strip(),
        cited_ids=[i for i in cited if i in ctx.movies],
        facts=facts,
        problems=list(dict.fromkeys(problems)),
    )


def render(text: str, ctx: ExplainContext, problems: list[str]) -> tuple[str, list[int]]:
    """Replace ``[[id]]`` with the context movie's "Title (Year)"; unknown ids stay as they are
    (and are reported)."""
    ids: list[int] = []

    def label(match: re.Match[str]) -> str:
        tmdb_id = int(match.group(1))
        ids.append(tmdb_id)
        if tmdb_id not in ctx.movies:
            problems.append(f"[[{tmdb_id}]] is not one of the movies in <catalog_data>")
            return match.group(0)
        return ctx.label(tmdb_id)

    rendered = PLACEHOLDER.sub(label, text)
    # A generator that writes "[[578]] (1975)" would otherwise print the year twice.
    return REPEATED_YEAR.sub(r"\1", rendered), ids


def title_problems(text: str, ctx: ExplainContext, index: TitleIndex) -> list[str]:
    problems: list[str] = []
    for occurrence in index.occurrences(text):
        if not occurrence.is_title_like():
            continue
        problem = _mention_problem(occurrence, ctx)
        if problem:
            problems.append(problem)
    problems.extend(_year_problems(text, ctx))
    return problems


def _mention_problem(occurrence: Occurrence, ctx: ExplainContext) -> str | None:
    entry = occurrence.entry
    same_title = [m for m in ctx.movies.values() if title_key(m.title) == entry.folded]
    if same_title:
        if occurrence.year is None or any(m.year == occurrence.year for m in same_title):
            return None
        return (
            f'it gives "{occurrence.span}" the year {occurrence.year}; the data says '
            f"{', '.join(str(m.year) for m in same_title)}"
        )
    if not occurrence.written_as_title and _in_corpus(occurrence.span, ctx.corpus):
        # The words are the data's own (a name, a place, a genre, a phrase of an overview,
        # or part of a context movie's title), not a reference to another film.
        return None
    return (
        f'it names "{occurrence.span}", a movie that is not in <catalog_data>; speak only of '
        "the movies given there, as [[id]]"
    )


def _year_problems(text: str, ctx: ExplainContext) -> list[str]:
    problems = []
    for match in YEAR_IN_PARENS.finditer(text):
        year = int(match.group(1))
        before = text[: match.start()].rstrip().rstrip("".join(QUOTES)).rstrip()
        ok = any(
            m.year == year
            and (
                before.casefold().endswith(m.title.casefold())
                or (m.original_title and before.casefold().endswith(m.original_title.casefold()))
            )
            for m in ctx.movies.values()
        )
        if not ok:
            tail = before[-60:].split("\n")[-1]
            problems.append(
                f'"{tail.strip()} ({year})" is not a movie in <catalog_data>; refer to movies '
                "only as [[id]]"
            )
    return problems


def _in_corpus(span: str, corpus: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(span)}(?!\w)", corpus) is not None


def _declared_facts(draft: Draft, ctx: ExplainContext, text: str) -> tuple[list[Fact], list[str]]:
    numbered = numbered_facts(ctx.facts)
    problems = []
    unknown = [r for r in draft.fact_refs if r not in numbered]
    if unknown:
        problems.append(f"fact ids {unknown} are not among the listed facts")
    declared = [numbered[r] for r in dict.fromkeys(draft.fact_refs) if r in numbered]
    stated = [f for f in declared if fact_mentioned(f, text)]
    if not stated:
        # A fact the text states but forgot to list still counts: it was computed from the
        # data, so it is true; only a text that states none is sent back.
        stated = [f for f in ctx.facts if fact_mentioned(f, text)]
    if ctx.facts and not stated:
        problems.append(
            "the text states none of the listed facts; ground it in at least one (and list its "
            "id in fact_ids)"
        )
    return stated, problems


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)
