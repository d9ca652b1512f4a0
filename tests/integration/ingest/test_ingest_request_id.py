"""The ingest run id travels with what the run publishes: every stream entry of a
``marquee-ingest`` run carries it as ``request_id``, and the embedder that applies the entries
names it in its log lines. Real CLI process, real Redis, a real embedder on real Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from marquee_embedder.app import create_app
from marquee_embedder.settings import EmbedderSettings
from marquee_shared.events import CATALOG_STREAM
from tests.support.asgi import serve
from tests.support.embedder import wait_drained
from tests.support.ingest import run_cli

pytestmark = pytest.mark.integration


def run_id_of(stderr: str) -> str:
    """The run id the CLI bound into its log lines (JSON, one object per line)."""
    ids = {
        json.loads(line)["run_id"] for line in stderr.splitlines() if '"ingest_finished"' in line
    }
    assert len(ids) == 1, stderr
    return str(ids.pop())


async def test_every_entry_of_an_ingest_run_carries_its_run_id_and_the_embedder_logs_it(
    redis: Redis,
    redis_url: str,
    chroma_url: str,
    collection_name: str,
    encoder: object,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "movies.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"tmdb_id": i, "title": f"Film {i}", "overview": "A lighthouse keeper."})
            for i in range(1, 6)
        )
        + "\n",
        encoding="utf-8",
    )
    files = run_cli("file", str(path), MARQUEE_REDIS_URL=redis_url)
    assert files.returncode == 0, files.stderr
    deletes = run_cli("delete", "5", MARQUEE_REDIS_URL=redis_url)
    assert deletes.returncode == 0, deletes.stderr
    file_run, delete_run = run_id_of(files.stderr), run_id_of(deletes.stderr)
    assert file_run != delete_run

    entries = await redis.xrange(CATALOG_STREAM)
    assert [fields[b"request_id"].decode() for _, fields in entries] == [file_run] * 5 + [
        delete_run
    ]

    settings = EmbedderSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection_name,
        poll_ms=100,
        log_format="json",
    )
    capfd.readouterr()
    async with serve(create_app(settings, encoder=encoder)):  # type: ignore[arg-type]
        await wait_drained(redis)
    # JSON or console-rendered lines, whichever structlog was set up with first.
    applied = [x for x in capfd.readouterr().err.splitlines() if "batch_applied" in x]
    assert applied
    assert any(file_run in x for x in applied)
    assert any(delete_run in x for x in applied)
