"""Print the third-party dependencies of pyproject.toml files, one per line (for pip -r).

The Dockerfiles install these in a layer of their own before any source is copied, so a code
change does not reinstall torch. Marquee's own packages (``marquee-*``) are left out: they are
installed from the copied source, without dependencies, in the next layer.

A path may name extras of its own project, as pip does: ``shared/pyproject.toml[model,torch]``
lists shared's dependencies and those of its ``model`` and ``torch`` extras (the embedder's and
search's export stage, the only place torch is installed).

Usage: python deploy/pyproject_deps.py shared/pyproject.toml services/search/pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_PREFIX = "marquee-"


def third_party_dependencies(paths: list[Path], extras: list[list[str]] | None = None) -> list[str]:
    """``extras[i]``: the extras of ``paths[i]``'s own project to include (none by default)."""
    projects = [tomllib.loads(p.read_text(encoding="utf-8"))["project"] for p in paths]
    by_name = {_normalise(p["name"]): p for p in projects}
    seen: dict[str, None] = {}  # an ordered set: the first file's order, no duplicates
    for project, own in zip(projects, extras or [[] for _ in paths], strict=True):
        optional_own = project.get("optional-dependencies", {})
        unknown = [e for e in own if e not in optional_own]
        if unknown:
            sys.exit(f"{project['name']} has no extra {', '.join(unknown)}")
        requirements = list(project.get("dependencies", []))
        requirements += [r for extra in own for r in optional_own[extra]]
        for requirement in requirements:
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
    parsed = [re.fullmatch(r"(.+?)(?:\[([^\]]*)\])?", arg) for arg in sys.argv[1:]]
    paths = [Path(m.group(1)) for m in parsed if m]
    extras = [[e.strip() for e in (m.group(2) or "").split(",") if e.strip()] for m in parsed if m]
    for requirement in third_party_dependencies(paths, extras):
        sys.stdout.write(f"{requirement}\n")
