"""docs/operations.md lists every Prometheus metric the services define, and names no metric
that does not exist. The metrics are found in the source (every prometheus_client Counter,
Gauge, Histogram, Summary, Info or Enum constructed in services/ and shared/), so a new metric
without a line in the operator's table fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
KINDS = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total")


def _prometheus_names(tree: ast.Module) -> set[str]:
    """Local names bound to prometheus_client's metric classes in this module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
            names |= {a.asname or a.name for a in node.names if a.name in KINDS}
    return names


def defined_metrics() -> dict[str, str]:
    """Metric name -> where it is defined, for every metric in services/ and shared/."""
    found: dict[str, str] = {}
    files = [*ROOT.glob("services/*/marquee_*/**/*.py"), *ROOT.glob("shared/**/*.py")]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        kinds = _prometheus_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in kinds:
                continue
            name_arg = node.args[0] if node.args else None
            name_arg = next((k.value for k in node.keywords if k.arg == "name"), name_arg)
            assert isinstance(name_arg, ast.Constant), (
                f"{path}:{node.lineno}: a metric whose name is not a literal cannot be checked"
            )
            name = str(name_arg.value)
            if node.func.id == "Counter" and not name.endswith("_total"):
                name += "_total"  # what prometheus_client exposes
            found[name] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def documented_metrics() -> set[str]:
    # Not module paths (marquee_gateway/ratelimit.py, marquee_shared.streams).
    return set(
        re.findall(r"\bmarquee_[a-z0-9_]+(?![a-z0-9_]|[/.][a-z])", DOC.read_text(encoding="utf-8"))
    )


def test_the_source_defines_metrics_at_all() -> None:
    # Guards the scan itself: a broken glob or import check would make the tests below vacuous.
    metrics = defined_metrics()
    assert "marquee_http_request_seconds" in metrics
    assert "marquee_embedder_events_total" in metrics
    assert len(metrics) >= 20


def test_operations_md_lists_every_metric_the_services_define() -> None:
    documented = documented_metrics()
    missing = {name: where for name, where in defined_metrics().items() if name not in documented}
    assert not missing, f"metrics missing from docs/operations.md: {missing}"


def test_operations_md_names_only_metrics_that_exist() -> None:
    defined = set(defined_metrics())

    def base(series: str) -> str:
        for suffix in SERIES_SUFFIXES:
            if series not in defined and series.endswith(suffix):
                series = series.removesuffix(suffix)
        return series

    unknown = {
        name
        for name in documented_metrics()
        if name not in defined
        and base(name) not in defined
        and f"{base(name)}_total" not in defined
    }
    assert not unknown, f"docs/operations.md names metrics no service defines: {unknown}"
