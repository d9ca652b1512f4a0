"""Where things are, for tests: the project root and ../shared's data kit beside it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
CATALOG_CSV = SHARED_DATA / "catalog" / "movies.csv"
