"""``marquee-embedder``: operator commands around the index and the catalog stream.

    marquee-embedder audit [--no-self-check] [--json]     exit 0 clean, 3 problems found
    marquee-embedder repair [--drop-orphans] [--json]     audit, then fix what it found
    marquee-embedder deadletters list [--limit N] [--json]
    marquee-embedder deadletters show ID
    marquee-embedder deadletters replay ID [ID ...]
    marquee-embedder deadletters purge (ID [ID ...] | --all)

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

from marquee_embedder.audit import AuditReport, audit, repair
from marquee_embedder.ledger import Ledger
from marquee_embedder.settings import EmbedderSettings
from marquee_shared import deadletters
from marquee_shared.chroma import open_collection
from marquee_shared.logging import configure_logging

EXIT_PROBLEMS = 3


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
        _, collection = await open_collection(
            settings.chroma_url, settings.chroma_collection, wait_s=5
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
