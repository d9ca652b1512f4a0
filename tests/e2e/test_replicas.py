"""Two embedder replicas share the work of 2,000 real catalog movies, and nothing is redone."""

from __future__ import annotations

import csv
import json

import pytest

import devstack
from tests.support.stack import embedder_metric, start_or_fail, wait_applied

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]

N = 2000


def test_two_replicas_index_2000_movies_exactly_once_and_reingest_embeds_nothing(
    tmp_path, catalog_csv
):
    sample = tmp_path / "sample.csv"
    with (
        catalog_csv.open(newline="", encoding="utf-8") as src,
        sample.open("w", newline="", encoding="utf-8") as dst,
    ):
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if i == N:
                break
            writer.writerow(row)

    stack = devstack.Stack(
        tmp_path / "stack", embedders=2, ports=devstack.Ports.free(), say=lambda _: None
    )
    start_or_fail(stack)
    try:
        first = stack.ingest("file", str(sample), "--json", "--quiet")
        assert first.returncode == 0, first.stdout + first.stderr
        summary = json.loads(first.stdout)
        published = summary["published"]
        assert published + summary["skipped"] + summary["invalid"] == N
        assert published >= 0.99 * N
        wait_applied(stack)

        # Every movie is in Chroma exactly once (ids are unique keys: the count is the proof).
        assert stack.indexed_count() == published
        per_replica = [embedder_metric(url, "embedded") for url in stack.embedder_urls]
        assert sum(per_replica) == published, per_replica
        assert all(n > 0 for n in per_replica), f"one replica did nothing: {per_replica}"

        second = stack.ingest("file", str(sample), "--json", "--quiet")
        assert second.returncode == 0, second.stderr
        wait_applied(stack)
        assert stack.indexed_count() == published
        assert [embedder_metric(url, "embedded") for url in stack.embedder_urls] == per_replica
        assert sum(embedder_metric(url, "unchanged") for url in stack.embedder_urls) == published
    finally:
        stack.stop()
