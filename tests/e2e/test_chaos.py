"""Nothing lost, whatever crashes: 2,000 real catalog movies (then new versions of 300 of them)
flow through 2 embedder workers while workers are killed with SIGKILL mid-batch, Chroma is
stopped and brought back, and Redis (AOF on) is restarted. Afterwards every movie is in Chroma
exactly once with its latest version, and the consistency audit is clean.

Checked against the test's own record of what it published, not only against the ledger.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

import devstack
from tests.support.stack import start_or_fail, wait_applied

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]

N = 2000
UPDATED = 300


def write_files(catalog_csv: Path, tmp: Path) -> tuple[Path, Path, dict[int, float | None]]:
    """The first N rows as CSV, and a JSONL of new versions (new rating) of UPDATED of them.
    Returns the expected final vote_average per id (None: the source has no rating)."""
    sample = tmp / "sample.csv"
    rows: list[dict[str, str]] = []
    with catalog_csv.open(newline="", encoding="utf-8") as src:
        reader = csv.DictReader(src)
        fieldnames = reader.fieldnames or []
        for i, row in enumerate(reader):
            if i == N:
                break
            rows.append(row)
    with sample.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)

    from marquee_ingest.sources import read_catalog_csv  # the reader the ingest CLI uses
    from marquee_shared.events import Movie

    movies = {m.tmdb_id: m for m in read_catalog_csv(sample) if isinstance(m, Movie)}
    expected: dict[int, float | None] = {i: m.vote_average for i, m in movies.items()}
    updates = tmp / "updates.jsonl"
    rng = random.Random(7)
    with updates.open("w", encoding="utf-8") as out:
        for tmdb_id in rng.sample(sorted(movies), UPDATED):
            new = movies[tmdb_id].model_copy(update={"vote_average": 9.9, "vote_count": 12345})
            expected[tmdb_id] = 9.9
            out.write(new.model_dump_json() + "\n")
    return sample, updates, expected


def audit(stack: devstack.Stack) -> dict[str, object]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "marquee-embedder"), "audit", "--json"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 3), result.stderr
    report: dict[str, object] = json.loads(result.stdout)["audit"]
    return report


def test_kills_and_outages_lose_nothing(tmp_path, catalog_csv):
    sample, updates, expected = write_files(catalog_csv, tmp_path)
    stack = devstack.Stack(
        tmp_path / "stack",
        embedders=2,
        ports=devstack.Ports.free(),
        env={
            "MARQUEE_EMBEDDER_CLAIM_IDLE_MS": "4000",
            "MARQUEE_EMBEDDER_RECOVERY_INTERVAL_S": "1",
            "MARQUEE_EMBEDDER_BATCH_SIZE": "32",
        },
        say=lambda _: None,
    )
    start_or_fail(stack)
    rng = random.Random(42)
    try:
        first = stack.ingest("file", str(sample), "--quiet")
        assert first.returncode == 0, first.stderr

        # Kill -9 a worker mid-batch, three times; each comes back under a new consumer name.
        for _ in range(3):
            time.sleep(rng.uniform(2, 5))
            victim = rng.choice(stack.embedders)
            victim.signal(signal.SIGKILL)
            victim.popen.wait(10)  # type: ignore[union-attr]
            victim.start()

        second = stack.ingest("file", str(updates), "--quiet")  # newer versions, mid-flight
        assert second.returncode == 0, second.stderr

        chroma = next(p for p in stack.procs if p.name == "chroma")
        time.sleep(2)
        chroma.stop()
        time.sleep(4)
        chroma.start()
        chroma.wait_until(
            lambda: devstack.http_ok(stack.chroma_url + "/api/v2/heartbeat"), "up", 60
        )

        redis = next(p for p in stack.procs if p.name == "redis")
        time.sleep(3)
        redis.stop()  # SIGTERM: AOF is flushed on a clean shutdown
        redis.start()
        redis.wait_until(lambda: devstack.redis_answers(stack.redis_url), "answering PING", 60)

        wait_applied(stack, timeout=900)
        # Anything still pending on a killed consumer is claimed within CLAIM_IDLE_MS.
        time.sleep(6)
        wait_applied(stack, timeout=300)

        client = chromadb.HttpClient(
            host="127.0.0.1",
            port=stack.ports.chroma,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        col = client.get_collection("movies_minilm_l6_v1")
        assert col.count() == len(expected)  # exactly once each: ids are the keys
        got = col.get(ids=[str(i) for i in expected], include=["metadatas"])
        stored = {
            int(i): md.get("vote_average")
            for i, md in zip(got["ids"], got["metadatas"], strict=True)
        }
        assert set(stored) == set(expected), "missing movies"
        wrong = {i: (stored[i], v) for i, v in expected.items() if stored[i] != v}
        assert not wrong, f"not at their latest version: {list(wrong.items())[:10]}"

        # The chaos hit work in flight: killed workers' entries were claimed by live ones, and
        # batches met Chroma down.
        logs = "".join(p.read_text() for p in stack.log_dir.glob("embedder-*.log"))
        assert '"entries_claimed"' in logs
        assert '"index_unavailable"' in logs

        report = audit(stack)
        assert report["clean"] is True, report
        assert report["ledger_live"] == len(expected)
    finally:
        stack.stop()
