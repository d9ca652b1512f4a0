"""Finding catalog titles in free text: the core of the hallucination check.

An explanation may only speak of movies in its context, so every catalog title that appears in
its text is found here and then checked against the context (marquee_explainer.validation).
The catalog has 15k titles and many are ordinary words ("It", "Heat", "Her", "Life", "Up",
"300"), so an occurrence counts as a mention by how it is written, not only by its letters:

- capitals must match where the title has them ("heat" is a word, "Heat" may be the film);
- a title made only of common words needs a capital that is not sentence-initial ("Taken" at
  the start of a sentence says nothing; "... like Taken" does);
- a numeric or one-/two-letter title ("300", "M", "Up") counts only when written as a title:
  in quotes or asterisks, or followed by a year, "300 (2006)";
- anything written as a title (quoted, or followed by "(YYYY)") always counts.

Common words come from a built-in list plus the catalog itself: the words its overviews use in
lower case most often (built with the index, so no word list has to ship).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

WORD = re.compile(r"\w+")
YEAR_AFTER = re.compile(r"\s*\((\d{4})\)")
# Straight and typographic quotes (escaped: ruff flags look-alike characters in literals).
QUOTES = frozenset("\"\u201c\u201d\u00ab\u00bb*_'\u2018\u2019")
SENTENCE_BREAK = frozenset(".!?:;\n")
LEADING_NOISE = QUOTES | frozenset(" \t([-\u2013\u2014")

COMMON_RANK = 2000
"""The catalog's most frequent lower-case overview words, beyond the built-in list, that count
as common: enough to cover everyday English, few enough to keep distinctive nouns out."""
COMMON_MIN_DF = 3

# Function words, frequent verbs and the words Marquee's own explanations are made of. Lower
# case; compared with the lower-cased title words.
BUILTIN_COMMON = frozenset(
    """
    a about above after again against all almost also although always am among an and another
    any are around as at away back be because been before being below best better between both
    but by can cannot could did do does doing done down during each either else enough even
    ever every few first for from further get gets go goes going got had has have having he
    her here hers herself him himself his how however i if in into is it its itself just last
    least less let like made make makes many may me more most much must my myself never new
    next no none nor not now of off often on once one only or other others our ours ourselves
    out over own part per perhaps quite rather really same see seen she should since so some
    something still such than that the their theirs them themselves then there these they this
    those though through thus to together too two under until up upon us very was way we well
    were what when where whether which while who whom whose why will with within without would
    yes yet you your yours yourself film films movie movies picture story stories liked loved
    love picked recommended recommend shares share shared sharing similar close closer closest
    match matches matching search searched directed director directors stars starring star
    cast actor actors themes theme deals dealing era decade decades genre genres plot tone
    mood kind sort taste tastes watch watched enjoy enjoyed enjoyable fan fans
    great good bad big small little old young long short high low large early late full whole
    real right left true false different possible able
    """.split()  # noqa: SIM905 - a word list reads better as prose than as 250 quoted items
)


class Strictness(Enum):
    NORMAL = "normal"
    """Distinctive words: any case-matching occurrence counts."""
    NEEDS_CAPITAL = "needs_capital"
    """Only common words: needs a capital that is not sentence-initial."""
    WRITTEN_AS_TITLE = "written_as_title"
    """Numbers and one- or two-letter titles: only quoted or followed by a year."""


@dataclass(frozen=True, slots=True)
class TitleEntry:
    title: str
    tokens: tuple[str, ...]
    folded: tuple[str, ...]
    breaks: tuple[bool, ...]
    """Per gap between tokens: does the title itself have a sentence break there ("Mr. X")?"""
    strictness: Strictness
    ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where a catalog title's words appear in a text, and how they are written there."""

    entry: TitleEntry
    start: int
    end: int
    span: str
    year: int | None
    """The year written right after it, "(1975)", if any."""
    written_as_title: bool
    capital_evidence: int
    """Capitalised words in the span that are not the first word of a sentence."""

    def is_title_like(self) -> bool:
        """Whether the way it is written makes it a reference to a film, before context."""
        if self.written_as_title:
            return True
        if self.entry.strictness is Strictness.WRITTEN_AS_TITLE:
            return False
        if self.entry.strictness is Strictness.NEEDS_CAPITAL:
            return self.capital_evidence > 0
        return True


def fold(token: str) -> str:
    return token.casefold()


def title_key(title: str) -> tuple[str, ...]:
    """Titles that differ only in case or punctuation are the same title."""
    return tuple(fold(t) for t in WORD.findall(title))


@dataclass
class TitleIndex:
    """Catalog titles keyed for scanning, plus the catalog's word statistics."""

    common: frozenset[str] = BUILTIN_COMMON
    document_frequency: Counter[str] = field(default_factory=Counter)
    documents: int = 0
    _entries: dict[tuple[str, ...], TitleEntry] = field(default_factory=dict)
    _longest: dict[str, int] = field(default_factory=dict)
    """Per first word, the most words a title starting with it has (bounds the lookups)."""

    @classmethod
    def build(cls, titles: Iterable[tuple[int, str]], overviews: Iterable[str] = ()) -> TitleIndex:
        df: Counter[str] = Counter()
        documents = 0
        for overview in overviews:
            documents += 1
            df.update({w for w in WORD.findall(overview) if w.islower()})
        frequent = {w for w, n in df.most_common(COMMON_RANK) if n >= COMMON_MIN_DF}
        index = cls(BUILTIN_COMMON | frequent, df, documents)
        for tmdb_id, title in titles:
            index.add(tmdb_id, title)
        return index

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tmdb_id: int, title: str) -> None:
        tokens = tuple(WORD.findall(title))
        if not tokens:
            return
        key = tuple(fold(t) for t in tokens)
        known = self._entries.get(key)
        if known is not None:
            if tmdb_id not in known.ids:
                self._entries[key] = TitleEntry(
                    known.title,
                    known.tokens,
                    known.folded,
                    known.breaks,
                    known.strictness,
                    known.ids | {tmdb_id},
                )
            return
        breaks = tuple(_has_break(g) for g in _gaps(title, tokens))
        self._entries[key] = TitleEntry(
            title, tokens, key, breaks, self._strictness(key), frozenset({tmdb_id})
        )
        self._longest[key[0]] = max(len(key), self._longest.get(key[0], 0))

    def ids_for(self, title: str) -> frozenset[int]:
        entry = self._entries.get(title_key(title))
        return entry.ids if entry else frozenset()

    def is_common(self, word: str) -> bool:
        return fold(word) in self.common

    def _strictness(self, key: tuple[str, ...]) -> Strictness:
        if all(t.isdigit() for t in key) or sum(len(t) for t in key) <= 2:
            return Strictness.WRITTEN_AS_TITLE
        if all(t in self.common for t in key):
            return Strictness.NEEDS_CAPITAL
        return Strictness.NORMAL

    def occurrences(self, text: str, *, ignore_case: bool = False) -> list[Occurrence]:
        """Non-overlapping catalog-title occurrences, longest match first at each position."""
        words = list(WORD.finditer(text))
        folded = [fold(w.group()) for w in words]
        found: list[Occurrence] = []
        i = 0
        while i < len(words):
            match = self._match_at(text, words, folded, i, ignore_case=ignore_case)
            if match is None:
                i += 1
                continue
            found.append(match)
            i += len(match.entry.tokens)
        return found

    def _match_at(
        self,
        text: str,
        words: list[re.Match[str]],
        folded: list[str],
        i: int,
        *,
        ignore_case: bool,
    ) -> Occurrence | None:
        # Longest first, so "Alien vs Predator" wins over "Alien": one dict lookup per length
        # (a scan of every title sharing the first word would be thousands for "The").
        longest = min(self._longest.get(folded[i], 0), len(words) - i)
        for n in range(longest, 0, -1):
            entry = self._entries.get(tuple(folded[i : i + n]))
            if entry is None:
                continue
            window = words[i : i + n]
            if not ignore_case and not _capitals_match(entry.tokens, window):
                continue
            text_breaks = tuple(
                _has_break(text[a.end() : b.start()]) for a, b in itertools.pairwise(window)
            )
            if text_breaks != entry.breaks:
                continue
            return _occurrence(text, entry, window)
        return None


def _capitals_match(title_tokens: tuple[str, ...], window: list[re.Match[str]]) -> bool:
    return all(
        not t[:1].isupper() or w.group()[:1].isupper()
        for t, w in zip(title_tokens, window, strict=True)
    )


def _occurrence(text: str, entry: TitleEntry, window: list[re.Match[str]]) -> Occurrence:
    start, end = window[0].start(), window[-1].end()
    year_match = YEAR_AFTER.match(text, end)
    year = int(year_match.group(1)) if year_match else None
    quoted = start > 0 and text[start - 1] in QUOTES and end < len(text) and text[end] in QUOTES
    initial = sentence_initial(text, start)
    evidence = sum(
        1 for j, w in enumerate(window) if w.group()[:1].isupper() and not (j == 0 and initial)
    )
    return Occurrence(
        entry=entry,
        start=start,
        end=end,
        span=text[start:end],
        year=year,
        written_as_title=quoted or year is not None,
        capital_evidence=evidence,
    )


def sentence_initial(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in LEADING_NOISE:
        i -= 1
    return i < 0 or text[i] in SENTENCE_BREAK


def _gaps(title: str, tokens: tuple[str, ...]) -> Iterator[str]:
    spans = [m.span() for m in WORD.finditer(title)]
    assert len(spans) == len(tokens)
    for (_, end), (start, _) in itertools.pairwise(spans):
        yield title[end:start]


def _has_break(gap: str) -> bool:
    return any(c in SENTENCE_BREAK for c in gap)
