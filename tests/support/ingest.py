"""Running the real ``marquee-ingest`` command from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m marquee_ingest ARGS`` with JSON logs and only ``env``'s Marquee/TMDB
    variables (none of the developer's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MARQUEE_", "TMDB_"))}
    return subprocess.run(
        [sys.executable, "-m", "marquee_ingest", *args],
        env={**base, "MARQUEE_LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The TMDB ids of the demo catalog that ``make run`` publishes.
DEMO_IDS = {
    json.loads(line)["tmdb_id"]
    for line in resources.files("marquee_ingest")
    .joinpath("data/demo_catalog.jsonl")
    .read_text()
    .splitlines()
    if line.strip()
}
