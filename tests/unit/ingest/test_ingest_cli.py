"""Command-line errors: exit code 2 and a one-line message, before anything is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee_ingest.cli import build_parser, main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TMDB_API_KEY",
        "TMDB_READ_TOKEN",
        "MARQUEE_INGEST_TMDB_API_KEY",
        "MARQUEE_INGEST_TMDB_READ_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    # Nothing listens here: a test that got as far as connecting would fail with exit code 1.
    monkeypatch.setenv("MARQUEE_REDIS_URL", "redis://127.0.0.1:1/0")
    # configure_logging binds the current sys.stderr (capsys's, closed after the test) for
    # the whole process; these tests must never get that far, and must not leak if they do.
    monkeypatch.setattr("marquee_ingest.cli.configure_logging", lambda *a, **k: None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fetch"], "invalid choice: 'fetch'"),
        (["file"], "the following arguments are required: path"),
        (["file", "x.csv", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["file", "x.csv", "--limit", "0"], "argument --limit: must be at least 1, got 0"),
        (["tmdb", "--list", "upcoming"], "argument --list: invalid choice: 'upcoming'"),
        (["tmdb", "--pages", "many"], "argument --pages: not a whole number: 'many'"),
        (["tmdb", "--pages", "501"], "TMDB serves at most 500 pages per list"),
        (["tmdb", "--ids", "603,x"], "argument --ids: not a whole number: 'x'"),
        (["tmdb", "--ids", ","], "argument --ids: expected comma-separated TMDB ids"),
        (["delete"], "the following arguments are required: ID"),
        (["delete", "603", "-4"], "argument ID: must be at least 1, got -4"),
        (["delete", "0"], "argument ID: must be at least 1, got 0"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file", str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err == f"marquee-ingest: no such file: {tmp_path / 'nope.csv'}\n"


def test_unknown_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,2,3.5\n", encoding="utf-8")

    assert main(["file", str(path)]) == 2
    assert "cannot tell the format of ratings.csv" in capsys.readouterr().err


def test_wrong_explicit_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,2,3.5\n", encoding="utf-8")

    assert main(["file", str(path), "--format", "tmdb5000"]) == 2
    assert "ratings.csv is not a tmdb5000 file" in capsys.readouterr().err


def test_tmdb_without_credentials_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tmdb"]) == 2
    assert "no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY" in capsys.readouterr().err


def test_invalid_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARQUEE_INGEST_TMDB_CONCURRENCY", "0")

    assert main(["demo"]) == 2
    assert "invalid settings: tmdb_concurrency" in capsys.readouterr().err


def test_options_are_accepted_after_the_command() -> None:
    args = build_parser().parse_args(["tmdb", "--ids", "603, 604", "--json", "-q"])

    assert args.ids == [603, 604]
    assert args.json
    assert args.quiet
    assert args.list_source == "popular"


def test_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "movies.csv"
    path.mkdir()

    assert main(["file", str(path)]) == 2
    assert capsys.readouterr().err == f"marquee-ingest: not a file: {path}\n"


@pytest.mark.parametrize("argv", [["sync"], ["sync", "--now"], ["sync", "--now", "--status"]])
def test_a_sync_run_without_credentials_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "no TMDB credentials" in capsys.readouterr().err


def test_sync_status_needs_no_credentials_only_redis(capsys: pytest.CaptureFixture[str]) -> None:
    # Got past the usage checks: it tried Redis (nothing listens at port 1) and said so.
    assert main(["sync", "--status"]) == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err


def test_invalid_cron_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_CRON", "every day")

    assert main(["sync", "--status"]) == 2
    assert "invalid settings: sync_cron" in capsys.readouterr().err
