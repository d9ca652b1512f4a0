"""``marquee-embedder``: operator commands around the index and the catalog stream.

    marquee-embedder audit [--no-self-check] [--json]     exit 0 clean, 3 problems found
    marquee-embedder repair [--drop-orphans] [--json]     audit, then fix what it found
    marquee-embedder deadletters list [--limit N] [--json]
    marquee-embedder deadletters show ID
    marquee-embedder deadletters replay ID [ID ...]
    marquee-embedder deadletters purge (ID [ID ...] | --all)
    marquee-embedder migrate start --model MODEL          change the model, no downtime
    marquee-embedder migrate (status | switch | rollback | finish | abort) [--json]

The workers themselves run as ``uvicorn marquee_embedder.app:create_app --factory``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from marquee_embedder import migration
from marquee_embedder.audit import AuditReport, audit, repair
from marquee_embedder.ledger import Ledger
from marquee_embedder.migration import MigrationStore
from marquee_embedder.settings import EmbedderSettings
from marquee_shared import deadletters
from marquee_shared.chroma import connect, open_collection
from marquee_shared.logging import configure_logging
from marquee_shared.migration import MigrationError, MigrationStatus, read_live
from marquee_shared.model.files import ModelError

EXIT_PROBLEMS = 3
EXIT_REFUSED = 4
"""A migrate command that does not apply now (the message says why)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marquee-embedder", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("audit", "check Chroma against the ledger"),
        ("repair", "audit and fix"),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument(
            "--no-self-check", action="store_true", help="skip the self-retrieval queries"
        )
        cmd.add_argument("--json", action="store_true")
        if name == "repair":
            cmd.add_argument(
                "--drop-orphans",
                action="store_true",
                help="delete records the ledger does not know",
            )
    dead = commands.add_parser("deadletters", help="list, show, replay or purge dead letters")
    dead_cmds = dead.add_subparsers(dest="action", required=True)
    listing = dead_cmds.add_parser("list")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    dead_cmds.add_parser("show").add_argument("id")
    dead_cmds.add_parser("replay").add_argument("ids", nargs="+", metavar="ID")
    purge = dead_cmds.add_parser("purge")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true")
    migrate = commands.add_parser(
        "migrate", help="change the embedding model without downtime (docs/operations.md)"
    )
    migrate_cmds = migrate.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("start", "create the new model's collection; the embedders fill it"),
        ("status", "where the migration stands"),
        ("switch", "serve from the new collection (once it covers every movie)"),
        ("rollback", "serve from the old collection again"),
        ("finish", "drop the old collection, stop the double writes"),
        ("abort", "drop the new collection, forget the migration (before a switch)"),
    ):
        cmd = migrate_cmds.add_parser(action, help=help_text)
        cmd.add_argument("--json", action="store_true")
        if action == "start":
            cmd.add_argument(
                "--model",
                required=True,
                help="stock, movie-tuned, a model folder's path, or a packaged model's id",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = EmbedderSettings()
    configure_logging(settings.log_level, "console" if sys.stderr.isatty() else "json")
    if args.command == "deadletters" and args.action == "purge" and not (args.ids or args.all):
        print("purge needs dead-letter ids or --all", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings))
    except (ConnectionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, settings: EmbedderSettings) -> int:
    redis: Redis = Redis.from_url(str(settings.redis_url))
    try:
        if args.command == "deadletters":
            return await _deadletters(args, redis, settings)
        if args.command == "migrate":
            return await _migrate(args, redis, settings)
        # The live collection: the alias's, once a model migration has switched.
        live = await read_live(redis, settings.chroma_collection)
        _, collection = await open_collection(
            settings.chroma_url, live.collection, wait_s=5, token=settings.chroma_token
        )
        ledger = Ledger(redis, f"{settings.catalog_stream}:ledger")
        report = await audit(
            collection,
            ledger,
            redis,
            stream=settings.catalog_stream,
            self_check=not args.no_self_check,
        )
        out: dict[str, Any] = {"audit": report.to_dict()}
        if args.command == "repair":
            out["repair"] = await repair(
                report,
                collection,
                ledger,
                redis,
                stream=settings.catalog_stream,
                max_backlog=settings.max_backlog,
                drop_orphans=args.drop_orphans,
            )
        print(json.dumps(out, indent=2) if args.json else _describe(report, out.get("repair")))
        return 0 if report.clean or args.command == "repair" else EXIT_PROBLEMS
    finally:
        await redis.aclose()


def _describe(report: AuditReport, repaired: dict[str, int] | None) -> str:
    lines = [
        (
            f"ledger: {report.ledger_live} live, {report.ledger_deleted} deleted; "
            f"chroma: {report.chroma_records} records; backlog: {report.backlog} events"
        ),
    ]
    for name in ("missing", "outdated", "resurrected", "orphans", "unretrievable", "unreadable"):
        ids = getattr(report, name)
        if ids:
            shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
            lines.append(f"{name:<13} {len(ids):>6}  {shown}")
    lines.append("clean" if report.clean else "problems found")
    if report.backlog and not report.clean:
        lines.append("note: events are still pending; audit again once the backlog is 0")
    if repaired is not None:
        lines.append(
            f"repair: deleted {repaired['deleted']}, re-published {repaired['republished']}"
        )
    return "\n".join(lines)


async def _migrate(args: argparse.Namespace, redis: Redis, settings: EmbedderSettings) -> int:
    logical = settings.chroma_collection
    store = MigrationStore(redis, logical, f"{settings.catalog_stream}:ledger")
    try:
        if args.action == "status":
            status = await store.status()
            if status is None:
                live = await read_live(redis, logical)
                print(
                    json.dumps({"migration": None, "live_collection": live.collection})
                    if args.json
                    else f"no migration; serving from {live.collection}"
                )
                return 0
        elif args.action == "switch":
            status = await migration.switch(redis, logical)
        elif args.action == "rollback":
            status = await migration.rollback(redis, logical)
        else:
            # Not open_collection: it would create the logical name's collection, which a
            # finished migration has dropped on purpose.
            chroma = await connect(settings.chroma_url, wait_s=5, token=settings.chroma_token)
            if args.action == "start":
                status = await migration.start(
                    store,
                    chroma,
                    settings.chroma_url,
                    model=args.model,
                    configured_source=str(settings.model_path or settings.model),
                    verify_interval_s=settings.migration_verify_interval_s,
                )
            else:
                drop = migration.finish if args.action == "finish" else migration.abort
                dropped = await drop(store, chroma)
                live = await read_live(redis, logical)
                print(
                    json.dumps({"dropped": dropped, "live_collection": live.collection})
                    if args.json
                    else f"dropped {dropped}; serving from {live.collection}"
                )
                return 0
    except (MigrationError, ModelError) as exc:
        print(f"migrate {args.action}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(status.model_dump_json(indent=2) if args.json else _describe_migration(status))
    return 0


def _describe_migration(status: MigrationStatus) -> str:
    return "\n".join(
        [
            f"phase:    {status.phase}",
            f"serving:  {status.live_collection}",
            f"source:   {status.source.collection} ({status.source.model})",
            f"target:   {status.target.collection} ({status.target.model})",
            (
                f"progress: {status.coverage_percent:.2f} % (ledger {status.scanned}/"
                f"{status.ledger_entries} scanned, {status.copied} copied; "
                f"missing at last verification: {status.missing})"
            ),
        ]
    )


async def _deadletters(args: argparse.Namespace, redis: Redis, settings: EmbedderSettings) -> int:
    stream = settings.dead_letter_stream
    if args.action == "list":
        letters = await deadletters.list_dead_letters(redis, stream=stream, limit=args.limit)
        total = await deadletters.count_dead_letters(redis, stream=stream)
        if args.json:
            print(
                json.dumps({"total": total, "items": [d.model_dump() for d in letters]}, indent=2)
            )
        else:
            print(f"{total} dead letter(s)")
            for d in letters:
                print(f"{d.id}  entry {d.entry_id}  deliveries {d.deliveries}  {d.reason[:120]}")
        return 0
    if args.action == "show":
        letter = await deadletters.get_dead_letter(redis, args.id, stream=stream)
        if letter is None:
            print(f"no dead letter {args.id}", file=sys.stderr)
            return 1
        print(letter.model_dump_json(indent=2))
        return 0
    if args.action == "replay":
        replayed = await deadletters.replay_dead_letters(redis, args.ids, stream=stream)
        for old, new in replayed.items():
            print(f"{old} -> {settings.catalog_stream} {new}")
        missing = sorted(set(args.ids) - set(replayed))
        if missing:
            print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 0 if not missing else 1
    purged = await deadletters.purge_dead_letters(
        redis, None if args.all else args.ids, stream=stream
    )
    print(f"purged {purged} dead letter(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
