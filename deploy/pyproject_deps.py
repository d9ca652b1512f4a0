"""Print the third-party dependencies of pyproject.toml files, one per line (for pip -r).

The Dockerfiles install these in a layer of their own before any source is copied, so a code
change does not reinstall torch. Marquee's own packages (``marquee-*``) are left out: they are
installed from the copied source, without dependencies, in the next layer.

Usage: python deploy/pyproject_deps.py shared/pyproject.toml services/search/pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_PREFIX = "marquee-"


def third_party_dependencies(paths: list[Path]) -> list[str]:
    seen: dict[str, None] = {}  # an ordered set: the first file's order, no duplicates
    for path in paths:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            name = re.match(r"[A-Za-z0-9._-]+", requirement)
            if name is None or name.group().lower().replace("_", "-").startswith(LOCAL_PREFIX):
                continue
            seen.setdefault(requirement, None)
    return list(seen)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for requirement in third_party_dependencies([Path(p) for p in sys.argv[1:]]):
        sys.stdout.write(f"{requirement}\n")
