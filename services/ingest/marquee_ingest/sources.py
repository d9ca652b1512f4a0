"""Catalog files to records: every record becomes a ``Movie`` or an ``InvalidRecord``, never an
exception, so one bad row cannot stop a 15,000-row import.

Text that is evidently mojibake (UTF-8 read as cp1252: ``BjÃ¶rk``) is repaired in every
format; each repaired record is noted in the ``repairs`` list a reader is given (the run's
summary counts them).

Formats:

- ``jsonl``: one ``Movie`` JSON object per line, in our own schema (blank lines skipped).
- ``catalog-csv``: the merged TMDB catalog (``tmdb_id, title, ..., director, cast_top5, ...``),
  list columns pipe-separated.
- ``tmdb5000``: Kaggle's "TMDB 5000" ``tmdb_5000_movies.csv`` (``id``, JSON-encoded ``genres`` and
  ``keywords``). It has no credits; a ``tmdb_5000_credits.csv`` beside it is joined when present.

Both CSV formats take optional ``poster_path`` and ``backdrop_path`` columns (TMDB image paths).
"""

from __future__ import annotations

import csv
import html
import json
from typing import TYPE_CHECKING, Any, Literal, get_args

import structlog
from pydantic import ValidationError

from marquee_ingest.records import (
    TOP_CAST,
    InvalidRecord,
    Record,
    Repair,
    build_file_movie,
    clean_names,
    repair_mojibake,
)
from marquee_shared.events import Movie, describe_validation_error

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

log = structlog.get_logger(__name__)

FileFormat = Literal["jsonl", "catalog-csv", "tmdb5000"]
FILE_FORMATS: tuple[FileFormat, ...] = get_args(FileFormat)
FormatChoice = FileFormat | Literal["auto"]

CSV_FIELD_LIMIT = 64 * 1024 * 1024
"""The csv module's default 128 KiB per field is below some keyword/credit JSON cells."""
TMDB5000_CREDITS_NAME = "tmdb_5000_credits.csv"

_CATALOG_REQUIRED = frozenset({"tmdb_id", "title"})
_TMDB5000_REQUIRED = frozenset({"id", "title", "genres", "keywords", "budget"})
_CSV_ROW = tuple[str, dict[str, str]]


class SourceFormatError(ValueError):
    """The file as a whole is not in the expected (or any recognised) format."""


# ---------------------------------------------------------------------------------------------
# Entry points


def read_records(
    path: Path, fmt: FormatChoice = "auto", *, repairs: list[Repair] | None = None
) -> Iterator[Record]:
    """Records of a catalog file. Raises SourceFormatError (eagerly) when the file as a whole
    is unusable: unknown format, or a CSV header without the required columns. Records whose
    text was repaired are noted in ``repairs`` as they are read."""
    resolved = check_format(path, fmt)
    readers: dict[FileFormat, Callable[..., Iterator[Record]]] = {
        "jsonl": read_jsonl,
        "catalog-csv": read_catalog_csv,
        "tmdb5000": read_tmdb5000,
    }
    return readers[resolved](path, repairs=repairs)


def check_format(path: Path, fmt: FormatChoice = "auto") -> FileFormat:
    """The file's format (detected for "auto"); SourceFormatError if the file is not in it."""
    if fmt == "auto":
        return detect_format(path)
    if fmt == "catalog-csv":
        _require_columns(path, _CATALOG_REQUIRED, fmt)
    elif fmt == "tmdb5000":
        _require_columns(path, _TMDB5000_REQUIRED, fmt)
    return fmt


def detect_format(path: Path) -> FileFormat:
    """The format from the extension, confirmed (or, without a known extension, decided) by the
    first line: a JSON object means JSONL, CSV headers tell the two CSV flavours apart."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    first = _first_line(path)
    if suffix != ".csv" and first.lstrip().startswith("{"):
        return "jsonl"
    columns = _header_columns(first)
    if columns >= _CATALOG_REQUIRED:
        return "catalog-csv"
    if columns >= _TMDB5000_REQUIRED:
        return "tmdb5000"
    shown = ", ".join(sorted(columns)[:12]) or "nothing"
    raise SourceFormatError(
        f"cannot tell the format of {path.name}: its first line has {shown}; "
        f"pass --format ({'|'.join(FILE_FORMATS)})"
    )


# ---------------------------------------------------------------------------------------------
# JSONL in our own schema


def read_jsonl(path: Path, *, repairs: list[Repair] | None = None) -> Iterator[Record]:
    """One Movie JSON object per line; blank lines skipped."""
    with _open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield _jsonl_record(line, f"{path.name}:{number}", repairs)


def _jsonl_record(line: str, where: str, repairs: list[Repair] | None) -> Movie | InvalidRecord:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return InvalidRecord(where, f"not JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(data, dict):
        return InvalidRecord(where, f"expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("tmdb_id"), int):
        where = f"{where} (tmdb_id {data['tmdb_id']})"
    data, repaired = repair_mojibake(data)
    try:
        movie = Movie.model_validate(data)
    except ValidationError as exc:
        return InvalidRecord(where, describe_validation_error(exc))
    if repaired and repairs is not None:
        repairs.append(Repair(where, repaired))
    return movie


# ---------------------------------------------------------------------------------------------
# The merged catalog CSV


def read_catalog_csv(path: Path, *, repairs: list[Repair] | None = None) -> Iterator[Record]:
    _require_columns(path, _CATALOG_REQUIRED, "catalog-csv")
    return _catalog_records(path, repairs)


def _catalog_records(path: Path, repairs: list[Repair] | None) -> Iterator[Record]:
    for row in _csv_rows(path):
        if isinstance(row, InvalidRecord):
            yield row
            continue
        where, values = row
        tmdb_id = values.get("tmdb_id", "").strip()
        yield build_file_movie(
            catalog_fields(values), f"{where} (tmdb_id {tmdb_id})" if tmdb_id else where, repairs
        )


def catalog_fields(row: Mapping[str, str]) -> dict[str, Any]:
    """Movie fields from one catalog CSV row (column names as in the header)."""
    release_date = _text(row.get("release_date"))
    vote_count = _number(row.get("vote_count"))
    return {
        "tmdb_id": _number(row.get("tmdb_id")),
        "title": _text(row.get("title")),
        "original_title": _text(row.get("original_title")),
        "overview": _text(row.get("overview")) or "",
        "tagline": _text(row.get("tagline")),
        "genres": _pipe_list(row.get("genres")),
        "release_date": release_date,
        # The merged sources disagree on the year now and then; the full date is the more
        # precise claim, and Movie derives the year from it. The column is the fallback only.
        "year": None if release_date else _number(row.get("year")),
        "directors": _pipe_list(row.get("director")),
        "cast": _pipe_list(row.get("cast_top5"))[:TOP_CAST],
        "keywords": _pipe_list(row.get("keywords")),
        "original_language": _text(row.get("original_language")),
        # 0 is the sources' "unknown", not a zero-minute film.
        "runtime": _number(row.get("runtime")) or None,
        # An average of no votes is a 0.0 placeholder, not a rating of zero.
        "vote_average": None if vote_count == 0 else _number(row.get("vote_average")),
        "vote_count": vote_count,
        "popularity": _number(row.get("popularity")),
        **_images(row),
    }


# ---------------------------------------------------------------------------------------------
# Kaggle "TMDB 5000"


def read_tmdb5000(
    path: Path, credits_path: Path | None = None, *, repairs: list[Repair] | None = None
) -> Iterator[Record]:
    """``tmdb_5000_movies.csv``; credits from ``credits_path`` or a sibling credits file."""
    _require_columns(path, _TMDB5000_REQUIRED, "tmdb5000")
    if credits_path is None and (sibling := path.with_name(TMDB5000_CREDITS_NAME)).is_file():
        credits_path = sibling
    people = _read_tmdb5000_credits(credits_path) if credits_path else {}
    return _tmdb5000_records(path, people, repairs)


def _tmdb5000_records(
    path: Path,
    people: Mapping[int, tuple[list[str], list[str]]],
    repairs: list[Repair] | None,
) -> Iterator[Record]:
    for row in _csv_rows(path):
        if isinstance(row, InvalidRecord):
            yield row
            continue
        where, values = row
        raw_id = values.get("id", "").strip()
        if raw_id:
            where = f"{where} (tmdb_id {raw_id})"
        try:
            fields = tmdb5000_fields(values)
        except (ValueError, TypeError) as exc:
            yield InvalidRecord(where, str(exc))
            continue
        if isinstance(fields["tmdb_id"], int) and fields["tmdb_id"] in people:
            fields["directors"], fields["cast"] = people[fields["tmdb_id"]]
        yield build_file_movie(fields, where, repairs)


def tmdb5000_fields(row: Mapping[str, str]) -> dict[str, Any]:
    """Movie fields from one ``tmdb_5000_movies.csv`` row; ValueError/TypeError on bad JSON."""
    vote_count = _number(row.get("vote_count"))
    return {
        "tmdb_id": _number(row.get("id")),
        "title": _text(row.get("title")),
        "original_title": _text(row.get("original_title")),
        "overview": _text(row.get("overview")) or "",
        "tagline": _text(row.get("tagline")),
        "genres": _json_names(row.get("genres"), "genres"),
        "release_date": _text(row.get("release_date")),
        "keywords": _json_names(row.get("keywords"), "keywords"),
        "original_language": _text(row.get("original_language")),
        "runtime": _number(row.get("runtime")) or None,
        "vote_average": None if vote_count == 0 else _number(row.get("vote_average")),
        "vote_count": vote_count,
        "popularity": _number(row.get("popularity")),
        **_images(row),
    }


def _read_tmdb5000_credits(path: Path) -> dict[int, tuple[list[str], list[str]]]:
    """movie_id -> (directors, top cast) from ``tmdb_5000_credits.csv``."""
    _require_columns(path, frozenset({"movie_id", "cast", "crew"}), "tmdb5000 credits")
    people: dict[int, tuple[list[str], list[str]]] = {}
    unreadable = 0
    for row in _csv_rows(path):
        if isinstance(row, InvalidRecord):
            unreadable += 1
            continue
        _, values = row
        try:
            cast = json.loads(values["cast"] or "[]")
            crew = json.loads(values["crew"] or "[]")
            movie_id = int(values["movie_id"])
        except ValueError:
            unreadable += 1
            continue
        if not isinstance(cast, list) or not isinstance(crew, list):
            unreadable += 1
            continue
        members = sorted(
            (m for m in cast if isinstance(m, dict)),
            key=lambda m: m["order"] if isinstance(m.get("order"), int) else 10**9,
        )
        people[movie_id] = (
            clean_names(
                _unescape(m.get("name"))
                for m in crew
                if isinstance(m, dict) and m.get("job") == "Director"
            ),
            clean_names(_unescape(m.get("name")) for m in members)[:TOP_CAST],
        )
    if unreadable:
        # Credits only enrich the movies; a movie without them is still worth indexing.
        log.warning("tmdb5000_credits_unreadable", file=path.name, rows=unreadable)
    return people


# ---------------------------------------------------------------------------------------------
# Helpers


def _open_text(path: Path) -> Any:
    # utf-8-sig: spreadsheet exports start with a BOM that would otherwise stick to the first
    # column name. errors="replace": a stray byte damages one field, it must not end the run.
    return path.open(encoding="utf-8-sig", errors="replace", newline="")


def _first_line(path: Path) -> str:
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                return str(line)
    return ""


def _header_columns(line: str) -> set[str]:
    try:
        header = next(csv.reader([line]), [])
    except csv.Error:
        return set()
    return {column.strip() for column in header}


def _require_columns(path: Path, required: frozenset[str], fmt: str) -> None:
    missing = required - _header_columns(_first_line(path))
    if missing:
        raise SourceFormatError(
            f"{path.name} is not a {fmt} file: its header lacks {', '.join(sorted(missing))}"
        )


def _csv_rows(path: Path) -> Iterator[_CSV_ROW | InvalidRecord]:
    """(``file:line``, row) per data row, or a report for a row that cannot be a record.

    ``line`` is where the row starts: quoted overviews span several physical lines.
    """
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with _open_text(path) as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        consumed = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield InvalidRecord(f"{path.name}:{consumed + 1}", f"unreadable CSV: {exc}")
                if reader.line_num == consumed:  # the reader cannot move past it
                    return
                consumed = reader.line_num
                continue
            where, consumed = f"{path.name}:{consumed + 1}", reader.line_num
            if not any(value.strip() for value in values):
                continue
            if header is None:
                header = [column.strip() for column in values]
                continue
            if len(values) != len(header):
                yield InvalidRecord(
                    where, f"row has {len(values)} fields, the header has {len(header)}"
                )
                continue
            yield where, dict(zip(header, values, strict=True))


def _unescape(value: object) -> str | None:
    return html.unescape(value) if isinstance(value, str) else None


def _text(value: str | None) -> str | None:
    """Stripped, HTML entities decoded (the sources carry ``&amp;``); empty means unknown."""
    if value is None:
        return None
    return html.unescape(value).strip() or None


def _images(row: Mapping[str, str]) -> dict[str, str | None]:
    """TMDB image paths, from the optional columns ``poster_path`` and ``backdrop_path``."""
    return {column: _text(row.get(column)) for column in ("poster_path", "backdrop_path")}


def _pipe_list(value: str | None) -> list[str]:
    if not value:
        return []
    return clean_names(html.unescape(part) for part in value.split("|"))


def _json_names(value: str | None, column: str) -> list[str]:
    if not value or not value.strip():
        return []
    try:
        items = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{column}: not a JSON list ({exc.msg})") from exc
    if not isinstance(items, list):
        raise TypeError(f"{column}: expected a JSON list, got {type(items).__name__}")
    return clean_names(_unescape(i.get("name")) for i in items if isinstance(i, dict))


def _number(value: str | None) -> int | float | str | None:
    """A number from a CSV cell: "98.0" -> 98, "" -> None. Text that is no number is passed on
    unchanged so validation names the field and the value."""
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number
