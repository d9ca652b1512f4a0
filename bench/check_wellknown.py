"""Check bench/data/wellknown.jsonl, the hand-written descriptions of well-known films.

Each line is ``{"id": "wk-001", "query": "...", "tmdb_id": 105, "title": "...", "year": 1985}``.
The checks keep the set honest as a description benchmark:

* format: the five fields with the right types, ids ``wk-NNN`` unique, tmdb_ids unique, and a
  query of 60-250 characters;
* no title words: no content word of the title (nor, with the catalog, of the original title)
  appears in the query, after lowercasing and stripping accents and punctuation; English stop
  words and words of two letters or fewer are ignored, and simple plural/possessive forms
  count as the same word ("wolves" is "wolf", "men" is "man");
* with ../shared/data/catalog/movies.csv present: every tmdb_id is in the catalog with that
  title and year, no cast or director surname is in the query, and no run of six or more
  consecutive words is shared with the film's overview or tagline (the queries are our own
  words, never the catalog's).

    .venv/bin/python bench/check_wellknown.py [--file PATH] [--catalog PATH]

Prints every problem and exits 1 if there is any; without the catalog only the first two groups
run (and it says so).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WELLKNOWN = ROOT / "bench" / "data" / "wellknown.jsonl"
CATALOG_CSV = ROOT.parent / "shared" / "data" / "catalog" / "movies.csv"

MIN_QUERY_CHARS = 60
MAX_QUERY_CHARS = 250
SHARED_RUN_WORDS = 6
FIELDS = {"id": str, "query": str, "tmdb_id": int, "title": str, "year": int}
ID_PATTERN = re.compile(r"^wk-\d{3}$")

_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are aren as at be because been before
    being below between both but by can could couldn did didn do does doesn doing don
    down during each few for from further had hadn has hasn have haven having he her here hers
    herself him himself his how i if in into is isn it its itself just me more most
    mustn my myself no nor not now of off on once only or other our ours ourselves out
    over own same shan she should shouldn so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was
    wasn we were weren what when where which while who whom why will with won would wouldn you
    your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
IRREGULAR_PLURALS = {
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "people": "person",
}


@dataclass(frozen=True)
class CatalogMovie:
    """The catalog fields the checks read."""

    tmdb_id: int
    title: str
    original_title: str
    year: int | None
    overview: str
    tagline: str
    people: tuple[str, ...]
    vote_count: int  # the larger of the catalog's two snapshots (vote_count, vote_count_2023)


def words(text: str) -> list[str]:
    """Lowercased words with accents and punctuation stripped ("Amélie's" -> amelie, s)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return re.findall(r"[^\W_]+", plain)


def word_forms(word: str) -> set[str]:
    """The forms a word is compared by: itself and its singular if it looks like a plural."""
    forms = {word, IRREGULAR_PLURALS.get(word, word)}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
        if word.endswith("es"):
            forms.add(word[:-2])
        if word.endswith("ies"):
            forms.add(word[:-3] + "y")
        if word.endswith("ves"):
            forms.update({word[:-3] + "f", word[:-3] + "fe"})
    return forms


def content_words(text: str) -> set[str]:
    """Words of three letters or more that are not English stop words."""
    return {w for w in words(text) if len(w) > 2 and w not in STOP_WORDS}


def shared_words(query: str, title: str) -> list[str]:
    """The query's words that are (a form of) a content word of the title."""
    title_forms: set[str] = set()
    for word in content_words(title):
        title_forms |= word_forms(word)
    return sorted({w for w in words(query) if word_forms(w) & title_forms})


def shared_run(query: str, text: str, n: int = SHARED_RUN_WORDS) -> str | None:
    """The first run of ``n`` consecutive words of the query that also occurs in ``text``."""
    qw, tw = words(query), words(text)
    grams = {tuple(tw[i : i + n]) for i in range(len(tw) - n + 1)}
    for i in range(len(qw) - n + 1):
        if tuple(qw[i : i + n]) in grams:
            return " ".join(qw[i : i + n])
    return None


def load_entries(path: Path = WELLKNOWN) -> tuple[list[dict[str, object]], list[str]]:
    """The entries of the JSON Lines file, and a problem for each line that is not an object."""
    entries: list[dict[str, object]] = []
    problems: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            problems.append(f"line {n}: blank line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: not a JSON object")
            continue
        entries.append(obj)
    return entries, problems


def _int_field(entry: Mapping[str, object], field: str) -> int | None:
    value = entry.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _movie(
    entry: Mapping[str, object], catalog: Mapping[int, CatalogMovie] | None
) -> CatalogMovie | None:
    tmdb_id = _int_field(entry, "tmdb_id")
    return catalog.get(tmdb_id) if catalog is not None and tmdb_id is not None else None


def _label(entry: Mapping[str, object]) -> str:
    return f"{entry.get('id', '?')} ({entry.get('title', '?')})"


def check_format(entries: Sequence[Mapping[str, object]]) -> list[str]:
    """Fields and types, unique ids and tmdb_ids, and the query length bounds."""
    problems: list[str] = []
    for entry in entries:
        label = _label(entry)
        if set(entry) != set(FIELDS):
            problems.append(f"{label}: fields are {sorted(entry)}, expected {sorted(FIELDS)}")
        for field, kind in FIELDS.items():
            value = entry.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                problems.append(f"{label}: {field} should be a {kind.__name__}, not {value!r}")
        if not ID_PATTERN.match(str(entry.get("id", ""))):
            problems.append(f"{label}: id does not look like wk-NNN")
        query = entry.get("query")
        if isinstance(query, str):
            if not MIN_QUERY_CHARS <= len(query) <= MAX_QUERY_CHARS:
                problems.append(
                    f"{label}: query has {len(query)} characters, "
                    f"outside {MIN_QUERY_CHARS}-{MAX_QUERY_CHARS}"
                )
            if query != query.strip() or "\n" in query:
                problems.append(f"{label}: query has surrounding whitespace or a newline")
    for field in ("id", "tmdb_id", "query"):
        counts = Counter(entry.get(field) for entry in entries)
        problems += [f"duplicate {field}: {value!r}" for value, c in counts.items() if c > 1]
    return problems


def check_title_words(
    entries: Sequence[Mapping[str, object]],
    catalog: Mapping[int, CatalogMovie] | None = None,
) -> list[str]:
    """No content word of the title (or, with the catalog, the original title) in the query."""
    problems: list[str] = []
    for entry in entries:
        titles = [str(entry.get("title", ""))]
        movie = _movie(entry, catalog)
        if movie is not None:
            titles += [movie.title, movie.original_title]
        found = sorted({w for t in titles for w in shared_words(str(entry.get("query", "")), t)})
        if found:
            problems.append(f"{_label(entry)}: query uses title words {found}")
    return problems


def check_catalog(
    entries: Sequence[Mapping[str, object]], catalog: Mapping[int, CatalogMovie]
) -> list[str]:
    """In the catalog with that title and year; no cast/director surname; no overview copying."""
    problems: list[str] = []
    for entry in entries:
        label = _label(entry)
        movie = _movie(entry, catalog)
        if movie is None:
            problems.append(f"{label}: tmdb_id {entry.get('tmdb_id')} is not in the catalog")
            continue
        if movie.title != entry.get("title") or movie.year != entry.get("year"):
            problems.append(
                f"{label}: the catalog has {movie.tmdb_id} as {movie.title!r} ({movie.year})"
            )
        query = str(entry.get("query", ""))
        query_words = set(words(query))
        surnames = {w for p in movie.people if (w := (words(p) or [""])[-1]) and len(w) > 2}
        named = sorted(surnames & query_words - STOP_WORDS)
        if named:
            problems.append(f"{label}: query names cast or director {named}")
        for field, text in (("overview", movie.overview), ("tagline", movie.tagline)):
            run = shared_run(query, text)
            if run:
                problems.append(f"{label}: query shares {run!r} with the {field}")
    return problems


def _int(value: str | None) -> int | None:
    try:
        return int(float(value or ""))
    except ValueError:
        return None


def load_catalog(
    path: Path = CATALOG_CSV, ids: Iterable[int] | None = None
) -> dict[int, CatalogMovie]:
    """The catalog rows by tmdb_id (only those in ``ids`` when given)."""
    wanted = set(ids) if ids is not None else None
    csv.field_size_limit(1 << 24)
    catalog: dict[int, CatalogMovie] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tmdb_id = _int(row["tmdb_id"])
            if tmdb_id is None or (wanted is not None and tmdb_id not in wanted):
                continue
            people = [p for p in (row["director"] + "|" + row["cast_top5"]).split("|") if p]
            catalog[tmdb_id] = CatalogMovie(
                tmdb_id=tmdb_id,
                title=row["title"],
                original_title=row["original_title"],
                year=_int(row["year"]),
                overview=row["overview"],
                tagline=row["tagline"],
                people=tuple(people),
                vote_count=max(_int(row["vote_count"]) or 0, _int(row["vote_count_2023"]) or 0),
            )
    return catalog


def summary(entries: Sequence[Mapping[str, object]]) -> str:
    decades = Counter(f"{year // 10 * 10}s" for e in entries if (year := _int_field(e, "year")))
    return f"{len(entries)} entries; by decade: " + ", ".join(
        f"{d} {n}" for d, n in sorted(decades.items())
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=WELLKNOWN)
    parser.add_argument("--catalog", type=Path, default=CATALOG_CSV)
    args = parser.parse_args(argv)

    entries, problems = load_entries(args.file)
    problems += check_format(entries)
    catalog = None
    if args.catalog.exists():
        ids = [i for e in entries if (i := _int_field(e, "tmdb_id")) is not None]
        catalog = load_catalog(args.catalog, ids)
        problems += check_catalog(entries, catalog)
    else:
        print(f"note: {args.catalog} is absent; the catalog checks were skipped")
    problems += check_title_words(entries, catalog)

    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.file}")
        return 1
    print(f"ok: {summary(entries)}")
    if catalog is not None:
        few = sorted(
            (m.vote_count, str(e["title"]))
            for e in entries
            if (m := _movie(e, catalog)) and m.vote_count < 1000
        )
        if few:
            print(f"note: {len(few)} with fewer than 1,000 votes in both snapshots: ", end="")
            print(", ".join(f"{t} ({v})" for v, t in few))
    return 0


if __name__ == "__main__":
    sys.exit(main())
