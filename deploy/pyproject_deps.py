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
    projects = [tomllib.loads(p.read_text(encoding="utf-8"))["project"] for p in paths]
    by_name = {_normalise(p["name"]): p for p in projects}
    seen: dict[str, None] = {}  # an ordered set: the first file's order, no duplicates
    for project in projects:
        for requirement in project.get("dependencies", []):
            match = re.match(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
            if match is None:
                continue
            name = _normalise(match.group(1))
            if not name.startswith(LOCAL_PREFIX):
                seen.setdefault(requirement, None)
                continue
            # A local package asked for with extras (marquee-shared[chroma]): its extras'
            # third-party requirements belong in this layer too.
            optional = by_name.get(name, {}).get("optional-dependencies", {})
            for extra in filter(None, (e.strip() for e in (match.group(2) or "").split(","))):
                for extra_requirement in optional.get(extra, []):
                    seen.setdefault(extra_requirement, None)
    return list(seen)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for requirement in third_party_dependencies([Path(p) for p in sys.argv[1:]]):
        sys.stdout.write(f"{requirement}\n")
