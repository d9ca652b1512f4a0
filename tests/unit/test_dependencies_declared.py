"""Every third-party module a package imports is a dependency it declares: directly, or
through the marquee-shared extras it asks for. An import that only works because another
dependency happens to pull the package in breaks the day that dependency stops."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "shared",
    *(f"services/{s}" for s in ("ingest", "embedder", "search", "explainer", "gateway")),
]
REQUIREMENT = re.compile(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?")
# Imported but declared elsewhere on purpose, each with its reason.
EXEMPT = {
    # jsonbody.py installs FastAPI error handlers; only the FastAPI services import it, and
    # they declare fastapi (the embedder, a FastStream worker, does not need it).
    ("shared", "fastapi"),
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(package: str) -> dict[str, Any]:
    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(project["project"])


def _names(requirements: list[str]) -> set[str]:
    return {_normalise(m.group(1)) for r in requirements if (m := REQUIREMENT.match(r))}


def _declared(package: str) -> set[str]:
    project = _project(package)
    shared = _project("shared")
    optional: dict[str, list[str]] = shared["optional-dependencies"]
    if package == "shared":  # its own extras hold what its optional modules import
        return _names(shared["dependencies"]) | _names([r for e in optional.values() for r in e])
    declared: set[str] = set()
    for requirement in project["dependencies"]:
        match = REQUIREMENT.match(requirement)
        assert match is not None
        declared.add(_normalise(match.group(1)))
        if _normalise(match.group(1)) == "marquee-shared":
            declared |= _names(shared["dependencies"])
            for extra in filter(None, (e.strip() for e in (match.group(2) or "").split(","))):
                declared |= _names(optional[extra])
    return declared


@cache
def _distributions() -> Mapping[str, list[str]]:
    return packages_distributions()


def _imported(package: str) -> dict[str, str]:
    """Third-party distribution -> the first place that imports it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top.startswith("marquee_"):
                    continue
                for distribution in _distributions().get(top, [top]):
                    found.setdefault(
                        _normalise(distribution), f"{path.relative_to(ROOT)}:{node.lineno}"
                    )
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_third_party_import_is_declared(package: str) -> None:
    declared = _declared(package)
    undeclared = {
        name: where
        for name, where in _imported(package).items()
        if name not in declared and (package, name) not in EXEMPT
    }
    assert not undeclared, f"imported but not in {package}/pyproject.toml: {undeclared}"
