"""A model migration on the real stack (devstack: 2 embedders, search, explainer, gateway, as
`make run`): a sample of the shared catalog is migrated to a second model while searches run
through the gateway and updates and deletions keep being published; every migrating embedder is
killed with SIGKILL mid-copy and restarted. Then: no search failed, both collections hold
exactly the newest version of every live movie (checked against the test's own record of what
it published), the switch and a rollback go through the admin API and every search replica
follows, `migrate finish` drops the old collection, and the audit is clean.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
from chromadb.config import Settings as ChromaSettings

import devstack
from tests.support.models import alt_model
from tests.support.stack import start_or_fail, wait_applied

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]

N = 300
LOGICAL = "movies_minilm_l6_v1"
QUERIES = ["a shark attacks a beach town", "space station crew", "love story in paris", "heist"]


def sample_csv(catalog_csv: Path, tmp: Path) -> tuple[Path, dict[int, Any]]:
    path = tmp / "sample.csv"
    with catalog_csv.open(newline="", encoding="utf-8") as src:
        reader = csv.DictReader(src)
        rows = [row for _, row in zip(range(N), reader, strict=False)]
        fields = reader.fieldnames or []
    with path.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    from marquee_ingest.sources import read_catalog_csv
    from marquee_shared.events import Movie

    return path, {m.tmdb_id: m for m in read_catalog_csv(path) if isinstance(m, Movie)}


def cli(stack: devstack.Stack, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "marquee-embedder"), *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in ok, result.stdout + result.stderr
    return result.stdout


def admin(stack: devstack.Stack, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method,
        f"{stack.gateway_url}/v1/admin/migration{path}",
        headers={"X-API-Key": stack.api_key},
        timeout=30,
    )


def status(stack: devstack.Stack) -> dict[str, Any] | None:
    r = admin(stack, "GET", "")
    assert r.status_code == 200, r.text
    migration: dict[str, Any] | None = r.json()["migration"]
    return migration


def wait(predicate: Any, what: str, stack: devstack.Stack, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"not {what} within {timeout}s; logs in {stack.log_dir}")


def search_model(stack: devstack.Stack) -> str:
    return str(httpx.get(stack.search_url + "/ready", timeout=10).json().get("model"))


def explainer_collection(stack: devstack.Stack) -> str:
    url = f"http://127.0.0.1:{stack.ports.explainer}/ready"
    return str(httpx.get(url, timeout=10).json().get("collection"))


class SearchLoad(threading.Thread):
    """Searches through the gateway, one after another, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.codes: list[int] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self.stopping.is_set():
                try:
                    r = client.get(self.url + "/v1/search", params={"q": QUERIES[i % 4], "k": 5})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    self.codes.append(r.status_code)
                    if r.status_code != 200 or not r.json()["results"]:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                i += 1
                time.sleep(0.05)


def collection_state(stack: devstack.Stack, name: str) -> dict[int, str]:
    client = chromadb.HttpClient(
        host="127.0.0.1",
        port=stack.ports.chroma,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    got = client.get_collection(name, embedding_function=None).get(include=["metadatas"])
    return {
        int(i): str(md["content_hash"]) for i, md in zip(got["ids"], got["metadatas"], strict=True)
    }


def test_model_migration_under_load_with_updates_deletes_and_kill_9(tmp_path, catalog_csv):
    sample, movies = sample_csv(catalog_csv, tmp_path)
    alt_path, alt_id = alt_model(tmp_path / "stock-alt")
    stack = devstack.Stack(
        tmp_path / "stack",
        embedders=2,
        ports=devstack.Ports.free(),
        env={
            "TMDB_API_KEY": "",
            "TMDB_READ_TOKEN": "",
            "MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
            "MARQUEE_EMBEDDER_CLAIM_IDLE_MS": "4000",
            "MARQUEE_EMBEDDER_RECOVERY_INTERVAL_S": "1",
            "MARQUEE_EMBEDDER_BATCH_SIZE": "32",
            # Small, throttled chunks: the copy lasts long enough to be killed in the middle.
            "MARQUEE_EMBEDDER_MIGRATION_BATCH_SIZE": "16",
            "MARQUEE_EMBEDDER_MIGRATION_RATE": "8",
            "MARQUEE_EMBEDDER_MIGRATION_LEASE_S": "6",
            "MARQUEE_EMBEDDER_MIGRATION_VERIFY_INTERVAL_S": "2",
            "MARQUEE_EMBEDDER_MIGRATION_POLL_S": "0.5",
            "MARQUEE_SEARCH_ALIAS_POLL_S": "0.5",
        },
        say=lambda _: None,
    )
    start_or_fail(stack)
    load = SearchLoad(stack.gateway_url)
    try:
        assert stack.ingest("file", str(sample), "--quiet").returncode == 0
        wait_applied(stack)
        stock = search_model(stack)
        load.start()

        started = json.loads(cli(stack, "migrate", "start", "--model", str(alt_path), "--json"))
        target = started["target"]["collection"]
        assert started["target"]["model"] == str(alt_id)
        stats = httpx.get(stack.gateway_url + "/v1/stats", timeout=10).json()
        assert stats["migration"]["phase"] == "copying"

        # New versions of 40 movies and 15 deletions while the copy runs.
        ids = sorted(movies)
        updates = tmp_path / "updates.jsonl"
        with updates.open("w", encoding="utf-8") as out:
            for tmdb_id in ids[:40]:
                new = movies[tmdb_id].model_copy(update={"vote_average": 9.9, "vote_count": 4242})
                movies[tmdb_id] = new
                out.write(new.model_dump_json() + "\n")
        assert stack.ingest("file", str(updates), "--quiet").returncode == 0
        gone = ids[100:115]
        assert stack.ingest("delete", *map(str, gone)).returncode == 0
        for tmdb_id in gone:
            del movies[tmdb_id]

        # kill -9 every migrating embedder mid-copy; they restart under new consumer names.
        wait(lambda: (s := status(stack)) is not None and s["scanned"] >= 32, "copying", stack)
        before = status(stack)
        assert before is not None
        assert before["phase"] == "copying", "the copy finished before the kill: slow it down"
        for proc in stack.embedders:
            proc.signal(signal.SIGKILL)
            proc.popen.wait(10)  # type: ignore[union-attr]
        for proc in stack.embedders:
            proc.start()
        wait(lambda: (s := status(stack)) is not None and s["phase"] == "ready", "ready", stack)
        after = status(stack)
        assert after is not None
        # Resumed, not restarted: every ledger entry counted once (a restart from scratch
        # would count the chunks done before the kill twice), the killed chunks re-claimed.
        assert after["scanned"] == after["ledger_entries"]
        assert after["scanned"] > before["scanned"]
        assert search_model(stack) == stock  # still the old collection until the switch
        wait_applied(stack)

        # The switch through the admin API, once a verification after the last event says so.
        applied_at = time.time()

        def switched() -> bool:
            s = status(stack)
            verified = s is not None and s["verified_at"] and s["missing"] == 0
            if not verified or _epoch(s["verified_at"]) < applied_at + 1:  # type: ignore[index]
                return False
            r = admin(stack, "POST", "/switch")
            assert r.status_code in (200, 409), r.text
            return r.status_code == 200

        wait(switched, "switched", stack)
        wait(lambda: search_model(stack) == str(alt_id), "search on the new model", stack, 120)
        expected = {i: m.content_hash() for i, m in movies.items()}
        for name in (LOGICAL, target):
            held = collection_state(stack, name)
            assert held == expected, f"{name}: {sorted(set(held) ^ set(expected))[:10]}"

        r = admin(stack, "POST", "/rollback")
        assert r.status_code == 200, r.text
        wait(lambda: search_model(stack) == stock, "search back on the old model", stack, 120)
        r = admin(stack, "POST", "/switch")
        assert r.status_code == 200, r.text
        wait(lambda: search_model(stack) == str(alt_id), "search on the new model", stack, 120)
        # The explainer follows the alias too, before the old collection goes.
        wait(lambda: explainer_collection(stack) == target, "the explainer on it", stack, 60)
        out = json.loads(cli(stack, "migrate", "finish", "--json"))
        assert out == {"dropped": LOGICAL, "live_collection": target}
        after_finish = len(load.codes)
        wait(lambda: len(load.codes) >= after_finish + 10, "searches after finish", stack, 60)
        load.stopping.set()
        load.join(30)
        assert len(load.codes) > 20, "too few searches ran during the migration"
        assert not load.failures, load.failures[:5]
        assert set(load.codes) == {200}

        report = json.loads(cli(stack, "audit", "--json", ok=(0, 3)))["audit"]
        assert report["clean"] is True, report
        assert report["ledger_live"] == len(movies)
        assert collection_state(stack, target) == expected
        gateway_log = (stack.log_dir / "gateway.log").read_text()
        assert '"status": 5' not in gateway_log
    finally:
        load.stopping.set()
        stack.stop()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
