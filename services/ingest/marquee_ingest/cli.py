"""``marquee-ingest``: publish catalog files, the demo catalog, TMDB movies or deletions, and
run or inspect the incremental TMDB sync (``sync``) the ingest service runs on its schedule.

Exit codes: 0 the run completed (invalid records are reported, not fatal), 1 Redis or TMDB
could not be reached (or failed part-way), 2 usage or configuration errors, 3 a sync is
already running elsewhere (nothing was done).
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
from marquee_ingest.settings import IngestSettings, log_deprecated_names
from marquee_ingest.sources import FILE_FORMATS, SourceFormatError, check_format
from marquee_ingest.sync import TmdbSync
from marquee_ingest.tmdb import (
    LIST_SOURCES,
    MAX_LIST_PAGES,
    TmdbClient,
    TmdbConfigError,
    TmdbError,
)
from marquee_shared.api import SyncRun, SyncStatus
from marquee_shared.events import describe_validation_error
from marquee_shared.logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from marquee_ingest.publish import Progress, Summary

PROG = "marquee-ingest"
SHOWN_INVALID = 20
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3

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
        "Exit codes: 0 done, 1 Redis/TMDB unreachable, 2 usage error, 3 a sync is already "
        "running.",
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

    sync_cmd = commands.add_parser(
        "sync",
        help="run the incremental TMDB sync once, or show where it stands",
        description="Publish what changed on TMDB since the last successful sync (the initial "
        "load if none ever ran), the same run the ingest service does on its schedule and "
        "under the same lock. With no option, --now.",
    )
    sync_cmd.add_argument("--now", action="store_true", help="run one sync now, in this process")
    sync_cmd.add_argument(
        "--status", action="store_true", help="show the sync status (after the run, with --now)"
    )
    sync_cmd.add_argument("--json", action="store_true", help="print JSON")
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
    log_deprecated_names()
    if args.command == "sync":
        return _execute_sync(args, settings)
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
    elif _needs_tmdb(args) and not settings.has_tmdb_credentials:
        raise UsageError("no TMDB credentials: set TMDB_READ_TOKEN or TMDB_API_KEY")


def _needs_tmdb(args: argparse.Namespace) -> bool:
    # `sync --status` alone only reads Redis.
    return args.command == "tmdb" or (args.command == "sync" and _sync_runs(args))


def _sync_runs(args: argparse.Namespace) -> bool:
    return bool(args.now or not args.status)


async def _run(args: argparse.Namespace, settings: IngestSettings) -> Summary:
    run_id = uuid.uuid4().hex[:12]
    with structlog.contextvars.bound_contextvars(run_id=run_id, command=args.command):
        redis = await connect_redis(settings)
        try:
            with _progress_bar(args) as bar:
                return await _dispatch(args, settings, redis, bar, run_id)
        finally:
            await redis.aclose()


async def _dispatch(
    args: argparse.Namespace, settings: IngestSettings, redis: Redis, bar: Progress, run_id: str
) -> Summary:
    # The run id goes on every stream entry (request_id), so the embedders' logs name the run.
    if args.command == "file":
        return await ingest_file(
            args.path,
            redis,
            settings,
            fmt=args.format,
            limit=args.limit,
            progress=bar,
            request_id=run_id,
        )
    if args.command == "demo":
        return await ingest_demo(redis, settings, limit=args.limit, progress=bar, request_id=run_id)
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
                request_id=run_id,
            )
    assert args.command == "delete"
    return await delete_movies(args.ids, redis, settings, request_id=run_id)


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
    if summary.repaired:
        lines += [
            (
                f"repaired  {summary.repaired_fields:,} fields in {len(summary.repaired):,} "
                "records (mojibake: UTF-8 text decoded as cp1252, e.g. BjÃ¶rk for Björk)"
            ),
            *(f"  {r.where}: {', '.join(r.fields)}" for r in summary.repaired[:SHOWN_INVALID]),
        ]
        if len(summary.repaired) > SHOWN_INVALID:
            more = len(summary.repaired) - SHOWN_INVALID
            lines.append(f"  ... and {more:,} more (--json lists all)")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# sync


def _execute_sync(args: argparse.Namespace, settings: IngestSettings) -> int:
    try:
        run, status = asyncio.run(
            _sync(settings, run_now=_sync_runs(args), show_status=args.status)
        )
    except (RedisUnavailableError, TmdbError) as exc:
        return _fail(str(exc), EXIT_USAGE if isinstance(exc, TmdbConfigError) else EXIT_UNAVAILABLE)
    except RedisError as exc:
        url = redact_url(str(settings.redis_url))
        return _fail(f"lost Redis at {url} during the run: {exc}", EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    _print_sync(args, run, status)
    if run is None or run.outcome == "succeeded":
        return EXIT_OK
    if run.outcome == "skipped":
        return _fail(f"no sync run: {run.reason}", EXIT_BUSY)
    return _fail(f"the sync failed: {run.reason}", EXIT_UNAVAILABLE)


def _print_sync(args: argparse.Namespace, run: SyncRun | None, status: SyncStatus | None) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "run": None if run is None else run.model_dump(mode="json"),
                    "status": None if status is None else status.model_dump(mode="json"),
                },
                ensure_ascii=False,
            )
        )
    else:
        if run is not None:
            print(_describe_run(run))
        if status is not None:
            print(_describe_status(status))


async def _sync(
    settings: IngestSettings, *, run_now: bool, show_status: bool
) -> tuple[SyncRun | None, SyncStatus | None]:
    redis = await connect_redis(settings)
    try:
        if not run_now:
            return None, await TmdbSync(redis, None, settings).status()
        async with TmdbClient.from_settings(settings) as tmdb:
            sync = TmdbSync(redis, tmdb, settings)
            run = await sync.run_once("cli")
            return run, (await sync.status()) if show_status else None
    finally:
        await redis.aclose()


def _describe_run(run: SyncRun) -> str:
    lines = [f"sync {run.run_id}: {run.outcome}" + (f" ({run.reason})" if run.reason else "")]
    if run.outcome in {"succeeded", "failed"}:
        window = f" of changes {run.window_start}..{run.window_end}" if run.window_start else ""
        lines += [
            f"  {run.mode} run{window}; {run.requests:,} TMDB requests"
            + (" (stopped at the cap; the next run carries on)" if run.capped else ""),
            f"  listed    {run.listed:,}",
            f"  fetched   {run.fetched:,} ({run.unchanged:,} unchanged)",
            (
                f"  published {run.published_fetched:,} movie.fetched, "
                f"{run.published_deleted:,} movie.deleted"
            ),
            f"  invalid   {run.invalid:,}",
            *(f"    {where}" for where in run.invalid_records),
        ]
    return "\n".join(lines)


def _describe_status(status: SyncStatus) -> str:
    def when(value: object) -> str:
        return "never" if value is None else str(value)

    running = f"yes, on {status.running_on}" if status.running else "no"
    lines = [
        f"running        {running}",
        f"watermark      {when(status.watermark)}",
        f"last started   {when(status.last_started_at)}",
        f"last success   {when(status.last_success_at)}",
        f"last error     {status.last_error or 'none'}"
        + (f" (at {status.last_error_at})" if status.last_error_at else ""),
        f"catalog        {status.catalog_size:,} movies published by ingest",
    ]
    return "\n".join(lines)
