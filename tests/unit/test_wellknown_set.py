"""bench/data/wellknown.jsonl stays a fair description benchmark: well-formed, never naming the
title, and (with the ../shared kit) pointing at the right catalog films without copying their
overviews. The same checks as `bench/check_wellknown.py`, imported from it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import check_wellknown as wk  # noqa: E402


@pytest.fixture(scope="module")
def entries() -> list[dict[str, object]]:
    loaded, problems = wk.load_entries(wk.WELLKNOWN)
    assert not problems, problems
    return loaded


def test_the_file_is_big_enough_and_well_formed(entries):
    assert len(entries) >= 130
    assert wk.check_format(entries) == []


def test_no_query_uses_a_word_of_its_title(entries):
    assert wk.check_title_words(entries) == []


def test_the_spread_covers_the_decades(entries):
    decades = {int(str(e["year"])) // 10 * 10 for e in entries}
    assert set(range(1930, 2030, 10)) <= decades


@pytest.mark.parametrize(
    ("query", "title", "found"),
    [
        ("a pack of wolves", "Dances with Wolves", ["wolves"]),
        ("a lone wolf", "Dances with Wolves", ["wolf"]),
        ("the dance at the end", "Dances with Wolves", ["dance"]),
        ("twelve tired man", "12 Angry Men", ["man"]),
        ("amelie's shop", "Amélie", ["amelie"]),
        ("story of a cuckoo", "One Flew Over the Cuckoo's Nest", ["cuckoo"]),
        ("the memory of a detective", "Memories of Murder", ["memory"]),
        ("two of them go up there", "Up", []),  # two letters or fewer, and stop words
        ("a shark at the beach", "Jaws", []),
    ],
)
def test_title_words_are_matched_in_their_simple_forms(query, title, found):
    assert wk.shared_words(query, title) == found


def test_the_checks_catch_planted_problems(entries):
    good = dict(entries[0])
    bad = [
        {**good, "query": "too short"},
        {**good, "query": f"a film called {good['title']} " + "x" * 60},
        {**good, "tmdb_id": "105"},
    ]
    format_problems = wk.check_format(bad)
    assert any("characters" in p for p in format_problems)
    assert any("tmdb_id should be a int" in p for p in format_problems)
    assert any("duplicate id" in p for p in format_problems)
    assert wk.check_title_words(bad[1:2])


def test_a_six_word_run_from_the_overview_is_caught():
    overview = "A young farm boy joins a rebellion against the evil empire."
    assert wk.shared_run("so a young farm boy joins a gang", overview) == "a young farm boy joins a"
    assert wk.shared_run("a young farm boy becomes a pilot", overview) is None


@pytest.mark.shared_data
def test_every_entry_matches_the_catalog_without_copying_it(entries, catalog_csv):
    ids = [int(str(e["tmdb_id"])) for e in entries]
    catalog = wk.load_catalog(catalog_csv, ids)
    assert wk.check_catalog(entries, catalog) == []
    assert wk.check_title_words(entries, catalog) == []  # the original titles too


def test_the_script_exits_1_and_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "wk-001", "query": "a great white shark keeps eating swimmers at the beach, '
        'jaws everywhere", "tmdb_id": 578, "title": "Jaws", "year": 1975}\n'
    )
    assert wk.main(["--file", str(bad), "--catalog", str(tmp_path / "absent.csv")]) == 1
    out = capsys.readouterr().out
    assert "title words ['jaws']" in out
    assert "catalog checks were skipped" in out
