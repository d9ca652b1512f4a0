"""Catalog file readers: JSONL, the catalog CSV and Kaggle's TMDB 5000, bad rows included."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from marquee_ingest.records import InvalidRecord, Record, Repair
from marquee_ingest.sources import (
    SourceFormatError,
    detect_format,
    read_catalog_csv,
    read_jsonl,
    read_records,
    read_tmdb5000,
)
from marquee_shared.events import Movie

CATALOG_COLUMNS = [
    "tmdb_id", "imdb_id", "title", "original_title", "year", "release_date", "genres",
    "overview", "tagline", "keywords", "director", "cast_top5", "original_language", "runtime",
    "vote_average", "vote_count", "popularity", "stats_source", "vote_average_2023",
    "vote_count_2023", "popularity_2023", "sources",
]  # fmt: skip
TMDB5000_COLUMNS = [
    "budget", "genres", "homepage", "id", "keywords", "original_language", "original_title",
    "overview", "popularity", "production_companies", "production_countries", "release_date",
    "revenue", "runtime", "spoken_languages", "status", "tagline", "title", "vote_average",
    "vote_count",
]  # fmt: skip


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def catalog_row(**values: str) -> dict[str, str]:
    row = {
        "tmdb_id": "6",
        "imdb_id": "tt0107286",
        "title": "Judgment Night",
        "year": "1993",
        "release_date": "1993-10-15",
        "genres": "Action|Thriller|Crime",
        "overview": "A game of cat &amp; mouse.",
        "tagline": "Don't move.",
        "keywords": "chicago|drug dealer",
        "director": "Stephen Hopkins",
        "cast_top5": "Emilio Estevez|Cuba Gooding Jr.|Denis Leary|Jeremy Piven|Peter Greene",
        "original_language": "en",
        "runtime": "110",
        "vote_average": "6.4",
        "vote_count": "36",
        "popularity": "0.815631",
        "stats_source": "udacity",
    }
    row.update(values)
    return row


def movies(records: list[Record]) -> list[Movie]:
    return [r for r in records if isinstance(r, Movie)]


def invalid(records: list[Record]) -> list[InvalidRecord]:
    return [r for r in records if isinstance(r, InvalidRecord)]


# -- JSONL ------------------------------------------------------------------------------------


def test_jsonl_valid_blank_and_bad_lines(tmp_path: Path) -> None:
    good = Movie(tmdb_id=603, title="The Matrix", release_date=date(1999, 3, 30))
    lines = [
        good.model_dump_json(),
        "",
        "   ",
        "{broken",
        "[1, 2]",
        json.dumps(
            {"tmdb_id": 5, "title": "Four Rooms", "year": 1994, "release_date": "1995-12-09"}
        ),
        json.dumps({"tmdb_id": 7, "title": "Extra", "budget": 5}),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    records = list(read_jsonl(path))

    assert movies(records) == [good]
    reports = invalid(records)
    assert [r.where for r in reports] == [
        "m.jsonl:4", "m.jsonl:5", "m.jsonl:6 (tmdb_id 5)", "m.jsonl:7 (tmdb_id 7)",
    ]  # fmt: skip
    assert reports[0].reason.startswith("not JSON: ")
    assert reports[1].reason == "expected a JSON object, got list"
    assert "year 1994 contradicts release_date 1995-12-09" in reports[2].reason
    assert "budget: Extra inputs are not permitted" in reports[3].reason


def test_jsonl_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"tmdb_id": 1, "title": "T"}).encode() + b"\n")

    assert movies(list(read_jsonl(path))) == [Movie(tmdb_id=1, title="T")]


# -- catalog CSV ------------------------------------------------------------------------------


def test_catalog_row_maps_every_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, [catalog_row()])

    (movie,) = list(read_catalog_csv(path))

    assert movie == Movie(
        tmdb_id=6,
        title="Judgment Night",
        overview="A game of cat & mouse.",  # HTML entity decoded
        tagline="Don't move.",
        genres=["Action", "Thriller", "Crime"],
        release_date=date(1993, 10, 15),
        year=1993,
        directors=["Stephen Hopkins"],
        cast=["Emilio Estevez", "Cuba Gooding Jr.", "Denis Leary", "Jeremy Piven", "Peter Greene"],
        keywords=["chicago", "drug dealer"],
        original_language="en",
        runtime=110,
        vote_average=6.4,
        vote_count=36,
        popularity=0.815631,
    )


def test_catalog_empty_cells_and_odd_numbers(tmp_path: Path) -> None:
    rows = [
        catalog_row(
            tmdb_id="1",
            original_title="",
            tagline="",
            keywords="",
            director="",
            cast_top5="",
            original_language="",
            runtime="0",
            genres="",
        ),
        catalog_row(tmdb_id="2", runtime="98.0", vote_count="0", vote_average="0.0"),
        catalog_row(tmdb_id="3", title="Tom &amp; Jerry", keywords="cat &amp; mouse|| chase "),
    ]
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, rows)

    first, second, third = list(read_catalog_csv(path))

    assert isinstance(first, Movie)
    assert (first.original_title, first.tagline, first.original_language, first.runtime) == (
        None, None, None, None,
    )  # fmt: skip
    assert (first.keywords, first.directors, first.cast, first.genres) == ([], [], [], [])
    assert isinstance(second, Movie)
    assert second.runtime == 98
    assert second.vote_average is None
    assert isinstance(third, Movie)
    assert third.title == "Tom & Jerry"
    assert third.keywords == ["cat & mouse", "chase"]


def test_catalog_release_date_wins_over_a_contradicting_year(tmp_path: Path) -> None:
    rows = [
        catalog_row(tmdb_id="1", year="1992", release_date="1993-10-15"),
        catalog_row(tmdb_id="2", year="1993", release_date=""),
    ]
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, rows)

    first, second = list(read_catalog_csv(path))

    assert isinstance(first, Movie)
    assert first.year == 1993
    assert isinstance(second, Movie)
    assert (second.release_date, second.year) == (None, 1993)


def test_catalog_bad_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    rows = [
        catalog_row(tmdb_id="1", overview="Line one\nline two\nline three"),  # lines 2-4
        catalog_row(tmdb_id="2", vote_average="eleven"),  # line 5
        catalog_row(tmdb_id="3", title=""),  # line 6
        catalog_row(tmdb_id="abc"),  # line 7
        catalog_row(tmdb_id="5", runtime="-3"),  # line 8
        catalog_row(tmdb_id="6"),  # line 9
    ]
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, rows)
    with path.open("a", encoding="utf-8") as f:
        f.write("7,tt1,Too,Few,Fields\n")  # line 10

    records = list(read_catalog_csv(path))

    assert [m.tmdb_id for m in movies(records)] == [1, 6]
    assert [(r.where, r.reason.split(":")[0]) for r in invalid(records)] == [
        ("movies.csv:5 (tmdb_id 2)", "vote_average"),
        ("movies.csv:6 (tmdb_id 3)", "title"),
        ("movies.csv:7 (tmdb_id abc)", "tmdb_id"),
        ("movies.csv:8 (tmdb_id 5)", "runtime"),
        ("movies.csv:10", "row has 5 fields, the header has 22"),
    ]


def test_catalog_lists_beyond_the_contract_are_cut(tmp_path: Path) -> None:
    directors = "|".join(f"Director {i}" for i in range(36))
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, [catalog_row(director=directors)])

    (movie,) = list(read_catalog_csv(path))

    assert isinstance(movie, Movie)
    assert len(movie.directors) == 20


def test_catalog_huge_field_is_read(tmp_path: Path) -> None:
    keywords = "|".join(f"k{i}" for i in range(60_000))  # ~400 KB: above csv's default limit
    path = write_csv(tmp_path / "movies.csv", CATALOG_COLUMNS, [catalog_row(keywords=keywords)])

    (movie,) = list(read_catalog_csv(path))

    assert isinstance(movie, Movie)
    assert len(movie.keywords) == 50


# -- TMDB 5000 --------------------------------------------------------------------------------


def tmdb5000_row(**values: str) -> dict[str, str]:
    row = {
        "budget": "237000000",
        "genres": json.dumps([{"id": 28, "name": "Action"}, {"id": 12, "name": "Adventure"}]),
        "homepage": "http://www.avatarmovie.com/",
        "id": "19995",
        "keywords": json.dumps([{"id": 1463, "name": "culture clash"}]),
        "original_language": "en",
        "original_title": "Avatar",
        "overview": "In the 22nd century, a paraplegic Marine is dispatched to the moon Pandora.",
        "popularity": "150.437577",
        "release_date": "2009-12-10",
        "revenue": "2787965087",
        "runtime": "162.0",
        "status": "Released",
        "tagline": "Enter the World of Pandora.",
        "title": "Avatar",
        "vote_average": "7.2",
        "vote_count": "11800",
    }
    row.update(values)
    return row


def test_tmdb5000_rows(tmp_path: Path) -> None:
    rows = [
        tmdb5000_row(),
        tmdb5000_row(id="2", genres="[{broken"),
        tmdb5000_row(id="3", keywords='{"id": 1}'),
        tmdb5000_row(id="4", genres="", keywords="[]", runtime="", release_date=""),
    ]
    path = write_csv(tmp_path / "tmdb_5000_movies.csv", TMDB5000_COLUMNS, rows)

    avatar, bad_json, not_a_list, bare = list(read_tmdb5000(path))

    assert isinstance(avatar, Movie)
    assert avatar.genres == ["Action", "Adventure"]
    assert avatar.keywords == ["culture clash"]
    assert (avatar.runtime, avatar.year, avatar.directors) == (162, 2009, [])
    assert bad_json == InvalidRecord(
        "tmdb_5000_movies.csv:3 (tmdb_id 2)",
        "genres: not a JSON list (Expecting property name enclosed in double quotes)",
    )
    assert isinstance(not_a_list, InvalidRecord)
    assert not_a_list.reason == "keywords: expected a JSON list, got dict"
    assert isinstance(bare, Movie)
    assert (bare.genres, bare.runtime, bare.release_date) == ([], None, None)


def test_tmdb5000_joins_credits_beside_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tmdb_5000_movies.csv", TMDB5000_COLUMNS, [tmdb5000_row()])
    cast = [{"name": n, "order": o} for n, o in [("Zoe Saldana", 1), ("Sam Worthington", 0)]]
    crew = [{"name": "James Cameron", "job": "Director"}, {"name": "Jon Landau", "job": "Producer"}]
    write_csv(
        tmp_path / "tmdb_5000_credits.csv",
        ["movie_id", "title", "cast", "crew"],
        [
            {
                "movie_id": "19995",
                "title": "Avatar",
                "cast": json.dumps(cast),
                "crew": json.dumps(crew),
            },
            {"movie_id": "x", "title": "Broken", "cast": "[", "crew": "["},
        ],
    )

    (movie,) = list(read_tmdb5000(path))

    assert isinstance(movie, Movie)
    assert movie.directors == ["James Cameron"]
    assert movie.cast == ["Sam Worthington", "Zoe Saldana"]


def test_image_paths_are_kept_from_files_that_have_them(tmp_path: Path) -> None:
    images = {"poster_path": "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg", "backdrop_path": ""}
    catalog = write_csv(
        tmp_path / "movies.csv", [*CATALOG_COLUMNS, *images], [catalog_row(**images)]
    )
    kaggle = write_csv(
        tmp_path / "tmdb_5000_movies.csv",
        [*TMDB5000_COLUMNS, *images],
        [tmdb5000_row(**images), tmdb5000_row(id="2", poster_path="https://x/y.jpg")],
    )

    (from_catalog,) = list(read_records(catalog))
    from_kaggle, full_url = list(read_records(kaggle))

    for movie in (from_catalog, from_kaggle):
        assert isinstance(movie, Movie)
        assert movie.poster_path == "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
        assert movie.backdrop_path is None  # an empty cell is "none"
    # Only TMDB's path is taken: a page puts it on the image host it trusts.
    assert isinstance(full_url, InvalidRecord)
    assert full_url.reason.startswith("poster_path: String should match pattern")
    # Files without the columns read as before.
    (plain,) = list(read_records(write_csv(tmp_path / "a.csv", CATALOG_COLUMNS, [catalog_row()])))
    assert isinstance(plain, Movie)
    assert plain.poster_path is None


# -- mojibake ---------------------------------------------------------------------------------

# UTF-8 text once decoded as cp1252, as Kaggle's TMDB 5000 files carry it (1,870 rows of the
# shared catalog had it before it was cleaned).
MOJIBAKE = {
    "title": "AmÃ©lie",
    "original_title": "Le Fabuleux Destin d'AmÃ©lie Poulain",
    "overview": "Californiaâ€™s “finest” waitress, in a cafÃ© of Montmartre.",
    "tagline": "She'll change your life.",
}
CLEAN_TITLE = "Björk\u2019s “Dancer”"  # curly quotes as text: never "repaired"


def test_tmdb5000_mojibake_is_repaired_and_curly_quotes_are_kept(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "tmdb_5000_movies.csv",
        TMDB5000_COLUMNS,
        [
            tmdb5000_row(
                id="194",
                keywords=json.dumps([{"id": 1, "name": "cafÃ©"}, {"id": 2, "name": "paris"}]),
                **MOJIBAKE,
            ),
            tmdb5000_row(id="2", title=CLEAN_TITLE, overview="Plain text: naïve, 100%."),
        ],
    )
    write_csv(
        tmp_path / "tmdb_5000_credits.csv",
        ["movie_id", "title", "cast", "crew"],
        [
            {
                "movie_id": "194",
                "title": "AmÃ©lie",
                "cast": json.dumps(
                    [{"name": "Audrey Tautou", "order": 0}, {"name": "BjÃ¶rk", "order": 1}]
                ),
                "crew": json.dumps([{"name": "Jean-Pierre Jeunet", "job": "Director"}]),
            }
        ],
    )
    repairs: list[Repair] = []

    amelie, clean = list(read_records(path, repairs=repairs))

    assert isinstance(amelie, Movie)
    assert amelie.title == "Amélie"
    assert amelie.original_title == "Le Fabuleux Destin d'Amélie Poulain"
    # Repaired where the bytes say so; the curly quotes that were text already stay curly.
    assert amelie.overview == "California\u2019s “finest” waitress, in a café of Montmartre."
    assert amelie.tagline == "She'll change your life."
    assert amelie.cast == ["Audrey Tautou", "Björk"]
    assert amelie.keywords == ["café", "paris"]
    # Correct text (curly quotes, accents) is left exactly as it was.
    assert isinstance(clean, Movie)
    assert (clean.title, clean.overview) == (CLEAN_TITLE, "Plain text: naïve, 100%.")
    assert repairs == [
        Repair(
            "tmdb_5000_movies.csv:2 (tmdb_id 194)",
            ("title", "original_title", "overview", "cast", "keywords"),
        )
    ]


def test_catalog_csv_and_jsonl_mojibake_is_repaired_too(tmp_path: Path) -> None:
    csv_path = write_csv(
        tmp_path / "movies.csv",
        CATALOG_COLUMNS,
        [catalog_row(director="Lars von Trier", cast_top5="BjÃ¶rk|Catherine Deneuve")],
    )
    jsonl_path = tmp_path / "movies.jsonl"
    jsonl_path.write_text(
        json.dumps({"tmdb_id": 16, "title": "Dancer in the Dark", "cast": ["BjÃ¶rk"]}) + "\n",
        encoding="utf-8",
    )
    repairs: list[Repair] = []

    (from_csv,) = list(read_records(csv_path, repairs=repairs))
    (from_jsonl,) = list(read_records(jsonl_path, repairs=repairs))

    assert isinstance(from_csv, Movie)
    assert isinstance(from_jsonl, Movie)
    assert from_csv.cast[0] == from_jsonl.cast[0] == "Björk"
    assert [r.fields for r in repairs] == [("cast",), ("cast",)]


# -- formats ----------------------------------------------------------------------------------


def test_detect_format(tmp_path: Path) -> None:
    catalog = write_csv(tmp_path / "a.csv", CATALOG_COLUMNS, [catalog_row()])
    kaggle = write_csv(tmp_path / "b.csv", TMDB5000_COLUMNS, [tmdb5000_row()])
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("", encoding="utf-8")
    no_extension = tmp_path / "dump"
    no_extension.write_text('\n{"tmdb_id": 1, "title": "T"}\n', encoding="utf-8")

    assert detect_format(catalog) == "catalog-csv"
    assert detect_format(kaggle) == "tmdb5000"
    assert detect_format(jsonl) == "jsonl"
    assert detect_format(no_extension) == "jsonl"
    assert movies(list(read_records(no_extension))) == [Movie(tmdb_id=1, title="T")]


def test_unknown_format_is_refused_up_front(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("name,rating\nx,1\n", encoding="utf-8")

    with pytest.raises(SourceFormatError, match=r"cannot tell the format of other.csv.*--format"):
        read_records(other)


def test_explicit_format_checks_the_header_eagerly(tmp_path: Path) -> None:
    kaggle = write_csv(tmp_path / "b.csv", TMDB5000_COLUMNS, [tmdb5000_row()])

    with pytest.raises(SourceFormatError, match="not a catalog-csv file: its header lacks tmdb_id"):
        read_records(kaggle, "catalog-csv")
