"""``marquee-ingest``: publish catalog files, the demo catalog, TMDB movies or deletions.

Exit codes: 0 the run completed (invalid records are reported, not fatal), 1 Redis or TMDB
could not be reached (or failed part-way), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError
from tqdm import tqdm

from marquee_ingest.ingest import (
    RedisUnavailableError,
    connect_redis,
    delete_movies,
    ingest_demo,
    ingest_file,
    ingest_tmdb,
    redact_url,
)
from marquee_ingest.settings import IngestSettings
from marquee_ingest.sources import FILE_FORMATS, SourceFormatError, check_format
from marquee_ingest.tmdb import (
    LIST_SOURCES,
    MAX_LIST_PAGES,
    TmdbClient,
    TmdbConfigError,
    TmdbError,
)
from marquee_shared.events import describe_validation_error
from marquee_shared.logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from marquee_ingest.publish import Progress, Summary

PROG = "marquee-ingest"
SHOWN_INVALID = 20
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2

log = structlog.get_logger(__name__)


class UsageError(Exception):
    """Bad input found after parsing (missing file, unknown format, no credentials)."""


# ---------------------------------------------------------------------------------------------
# Arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _id_list(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated TMDB ids, e.g. 603,604")
    return [_positive_int(part) for part in parts]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (also off when not a TTY)"
    )
    common.add_argument(
        "--json", action="store_true", help="print the summary as JSON (all invalid records)"
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish movies to the Marquee catalog stream (Redis).",
        epilog="Redis: MARQUEE_REDIS_URL. TMDB: TMDB_READ_TOKEN or TMDB_API_KEY. "
        "Exit codes: 0 done, 1 Redis/TMDB unreachable, 2 usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    file_cmd = commands.add_parser(
        "file", parents=[common], help="publish a catalog file (JSONL or CSV)"
    )
    file_cmd.add_argument("path", type=Path, help="the file to publish")
    file_cmd.add_argument(
        "--format",
        choices=["auto", *FILE_FORMATS],
        default="auto",
        help="file format (default: from the extension and header)",
    )
    file_cmd.add_argument(
        "--limit", type=_positive_int, metavar="N", help="read only the first N records"
    )

    demo_cmd = commands.add_parser(
        "demo", parents=[common], help="publish the bundled demo catalog"
    )
    demo_cmd.add_argument(
        "--limit", type=_positive_int, metavar="N", help="read only the first N records"
    )

    tmdb_cmd = commands.add_parser("tmdb", parents=[common], help="fetch movies from TMDB")
    tmdb_cmd.add_argument(
        "--list",
        dest="list_source",
        choices=LIST_SOURCES,
        default="popular",
        help="which TMDB list to take ids from (default: popular)",
    )
    tmdb_cmd.add_argument(
        "--pages",
        type=_positive_int,
        default=1,
        metavar="N",
        help=f"list pages to read, 20 movies each (default: 1, at most {MAX_LIST_PAGES})",
    )
    tmdb_cmd.add_argument(
        "--ids", type=_id_list, metavar="ID,ID,...", help="fetch these ids instead of a list"
    )

    delete_cmd = commands.add_parser(
        "delete", parents=[common], help="publish deletions for TMDB ids"
    )
    delete_cmd.add_argument("ids", type=_positive_int, nargs="+", metavar="ID")
    return parser


# ---------------------------------------------------------------------------------------------
# Running


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "tmdb" and args.pages > MAX_LIST_PAGES:
        parser.error(f"--pages: TMDB serves at most {MAX_LIST_PAGES} pages per list")
    try:
        settings = IngestSettings()
        _check_usage(args, settings)
    except ValidationError as exc:
        return _fail(f"invalid settings: {describe_validation_error(exc)}", EXIT_USAGE)
    except (UsageError, SourceFormatError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # the file exists but cannot be read (permissions, a directory...)
        return _fail(f"cannot read {args.path}: {exc.strerror or exc}", EXIT_USAGE)
    configure_logging(settings.log_level, settings.log_format)
    return _execute(args, settings)


def _execute(args: argparse.Namespace, settings: IngestSettings) -> int:
    try:
        summary = asyncio.run(_run(args, settings))
    except (SourceFormatError, TmdbConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (RedisUnavailableError, TmdbError) as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except RedisError as exc:
        url = redact_url(str(settings.redis_url))
        return _fail(f"lost Redis at {url} during the run: {exc}", EXIT_UNAVAILABLE)
    except OSError as exc:  # e.g. the file became unreadable mid-run, or the demo is missing
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    _print_summary(summary, as_json=args.json)
    return EXIT_OK


def _check_usage(args: argparse.Namespace, settings: IngestSettings) -> None:
    """Reject bad input before connecting to anything."""
    if args.command == "file":
        path: Path = args.path
        if not path.is_file():
            raise UsageError(f"{'not a file' if path.exists() else 'no such file'}: {path}")
        args.format = check_format(path, args.format)
    elif args.command == "tmdb" and not (settings.tmdb_api_key or settings.tmdb_read_token):
        raise UsageError("no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY")


async def _run(args: argparse.Namespace, settings: IngestSettings) -> Summary:
    run_id = uuid.uuid4().hex[:12]
    with structlog.contextvars.bound_contextvars(run_id=run_id, command=args.command):
        redis = await connect_redis(settings)
        try:
            with _progress_bar(args) as bar:
                return await _dispatch(args, settings, redis, bar)
        finally:
            await redis.aclose()


async def _dispatch(
    args: argparse.Namespace, settings: IngestSettings, redis: Redis, bar: Progress
) -> Summary:
    if args.command == "file":
        return await ingest_file(
            args.path, redis, settings, fmt=args.format, limit=args.limit, progress=bar
        )
    if args.command == "demo":
        return await ingest_demo(redis, settings, limit=args.limit, progress=bar)
    if args.command == "tmdb":
        async with TmdbClient.from_settings(settings) as tmdb:
            return await ingest_tmdb(
                tmdb,
                redis,
                settings,
                ids=args.ids,
                list_source=args.list_source,
                pages=args.pages,
                progress=bar,
            )
    assert args.command == "delete"
    return await delete_movies(args.ids, redis, settings)


def _progress_bar(args: argparse.Namespace) -> Any:
    # stderr, so stdout carries only the summary (and stays parseable with --json).
    return tqdm(
        desc=args.command,
        unit=" records",
        file=sys.stderr,
        disable=args.quiet or args.command == "delete" or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _print_summary(summary: Summary, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
        return
    lines = [
        (
            f"published {summary.published:,} {summary.event_type} events to {summary.stream} "
            f"(source {summary.source}) in {summary.elapsed:.1f}s"
        ),
        f"skipped   {summary.skipped:,}",
        *(f"  {count:,} {reason}" for reason, count in summary.skipped_reasons.most_common()),
        f"invalid   {len(summary.invalid):,}",
        *(f"  {r.where}: {r.reason}" for r in summary.invalid[:SHOWN_INVALID]),
    ]
    if len(summary.invalid) > SHOWN_INVALID:
        lines.append(f"  ... and {len(summary.invalid) - SHOWN_INVALID:,} more (--json lists all)")
    print("\n".join(lines))
