"""The public gateway under a schema-driven fuzzer, plus the security answers it must give.

schemathesis reads the gateway's own OpenAPI document and generates requests for every
operation, valid ones and invalid ones, against a real gateway in front of every backend it
routes to (search, explainer, ingest) over real Redis and Chroma. Whatever it sends, the gateway
must never answer 5xx, and every answer must be one the schema documents, in the documented
shape. Examples are derandomized: a failure reproduces on the next run, and CI is not flaky.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from prometheus_client import REGISTRY
from schemathesis.core.mutations import OperatorKind
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from marquee_explainer.app import create_app as create_explainer
from marquee_explainer.settings import ExplainerSettings
from marquee_ingest.app import create_app as create_ingest
from marquee_ingest.settings import IngestSettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.api import TMDB_GENRES
from tests.support.asgi import serve
from tests.support.gateway import API_KEY

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 12
"""Per operation and mode (valid, invalid): a few hundred requests in all, which reach every
parameter and bound; the run stays under a minute on two busy cores."""
WRITE_PREFIXES = ("/v1/catalog/", "/v1/admin/")
INTERNAL_TOKEN = "fuzz-internal-token"

# Rules an OpenAPI schema cannot state, so a schema-valid request may break them and get 422:
# cross-field ones (year_min <= year_max, a taste needs liked ids or ratings) report no field
# in their location; the others (a blank query, a movie's year against its release date, the
# year of a release date, an event time in the future) are listed here by message.
SEMANTIC_RULES = (
    "q must contain some text",
    "contradicts release_date",
    "is after year_max",
    "is outside 1870-2100",
    "is in the future",
)


def positive_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for the semantic 422s above. Any other
    422 to schema-valid data means the documented schema and the validators disagree."""
    if response.status_code == 422:
        errors = response.json().get("detail")
        if isinstance(errors, list) and errors and all(_semantic(e) for e in errors):
            return None
    return positive_data_acceptance(ctx, response, case)


def negative_data_rejected(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' negative_data_rejection, except for two leniencies on purpose: a JSON type
    that pydantic converts (its lax mode: "42" for 42, a Unix time for a date-time, 1 for
    true), and an empty ``genres`` value, read as "no genre filter" (what an HTML form sends
    for an empty choice; an enum cannot say so). Out-of-range values, bad patterns, unknown
    genres, missing or extra fields must still be refused."""
    phase = getattr(case.meta, "phase", None)
    mutations = getattr(getattr(phase, "data", None), "mutations", None) or ()
    if mutations and all(_lenient(m, case) for m in mutations):
        return None
    return negative_data_rejection(ctx, response, case)


def _lenient(mutation: Any, case: schemathesis.Case) -> bool:
    if mutation.operator is OperatorKind.CHANGE_TYPE:
        return True
    if mutation.parameter != "genres" or mutation.parameter_location.value != "query":
        return False
    value = (case.query or {}).get("genres")
    values = value if isinstance(value, list) else [value]
    return all(str(v).strip() == "" or str(v) in TMDB_GENRES for v in values)


def _semantic(error: dict[str, Any]) -> bool:
    cross_field = len(error.get("loc", [])) == 1  # ["query"] or ["body"]: the whole model
    return cross_field or any(rule in error.get("msg", "") for rule in SEMANTIC_RULES)


@pytest.fixture
async def stack(gateway, chroma_url, redis_url, gateway_collection, redis, encoder):
    """A gateway with every backend it routes to, wired as deployed (one internal token),
    rate limits off so the fuzzer is not throttled."""
    search = SearchSettings(
        chroma_url=chroma_url,
        chroma_collection=gateway_collection,
        redis_url=redis_url,
        internal_token=INTERNAL_TOKEN,
    )
    explainer = ExplainerSettings(
        chroma_url=chroma_url,
        chroma_collection=gateway_collection,
        redis_url=redis_url,
        anthropic_api_key=None,  # the deterministic explainer: no network
        internal_token=INTERNAL_TOKEN,
        log_format="console",
    )
    ingest = IngestSettings(
        redis_url=redis_url,
        tmdb_api_key=None,  # no TMDB: a sync request is refused (409), nothing leaves the host
        tmdb_read_token=None,
        sync_interval_s=0,
        internal_token=INTERNAL_TOKEN,
        log_format="console",
    )
    async with (
        serve(create_search(search, encoder=encoder)) as search_url,
        serve(create_explainer(explainer)) as explainer_url,
        serve(create_ingest(ingest)) as ingest_url,
        gateway(
            search_url=search_url,
            explainer_url=explainer_url,
            ingest_url=ingest_url,
            internal_token=INTERNAL_TOKEN,
            rate_limit_per_minute=0,
            write_rate_limit_per_minute=0,
        ) as gw,
    ):
        yield gw


def fuzz(base_url: str) -> tuple[int, dict[str, str]]:
    """Runs every operation in both modes; returns the number of operations and a failure
    report per failing operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4, [op.label for op in operations]
    failures: dict[str, str] = {}
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, headers={"X-API-Key": API_KEY})

            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,  # no .hypothesis/ folder in the work tree
                derandomize=True,  # the same inputs on every run: a failure reproduces
                phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=base_url,
                    timeout=30,
                    excluded_checks=[positive_data_acceptance, negative_data_rejection],
                    additional_checks=[positive_data_accepted, negative_data_rejected],
                )

            label = f"{operation.label} ({mode.value})"
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # An operation without parameters or body has no invalid variant to send.
                if mode is schemathesis.GenerationMode.POSITIVE:
                    failures[label] = "no request could be generated"
            # schemathesis' FailureGroup is a BaseExceptionGroup; collect every operation's.
            except (Exception, BaseExceptionGroup) as exc:
                failures[label] = str(exc)[:3000]
    return len(operations), failures


async def test_the_gateway_survives_schema_driven_fuzzing(stack):
    started, before = time.monotonic(), gateway_requests()
    # schemathesis calls over `requests` (blocking): off the loop that serves the apps.
    operations, failures = await asyncio.to_thread(fuzz, stack)
    report = "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
    assert not failures, report
    # The fuzzer really ran: most examples reach the gateway (a few are filtered or repeats).
    assert gateway_requests() - before >= operations * EXAMPLES_PER_OPERATION
    assert time.monotonic() - started < 90


def gateway_requests() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "marquee_http_request_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count") and sample.labels.get("service") == "gateway"
    )


async def test_every_key_protected_endpoint_refuses_missing_and_wrong_keys(stack):
    async with httpx.AsyncClient(base_url=stack) as client:
        spec = (await client.get("/openapi.json")).json()
        protected = [
            (method, path, op)
            for path, item in spec["paths"].items()
            for method, op in item.items()
            if isinstance(op, dict) and _needs_api_key(op)
        ]
        labels = {f"{m.upper()} {p}" for m, p, _ in protected}
        assert "POST /v1/catalog/events" in labels
        # Everything that changes the catalog or administers the system declares the key.
        # (Other POSTs, such as explanations and recommendations, only read.)
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if path.startswith(WRITE_PREFIXES) and isinstance(op, dict):
                    assert _needs_api_key(op), f"{method.upper()} {path} is open"

        for method, path, op in protected:
            url = _fill_path(path)
            body: dict[str, Any] | None = {} if "requestBody" in op else None
            missing = await client.request(method, url, json=body)
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.json() == {"detail": "missing X-API-Key header"}
            wrong = await client.request(method, url, json=body, headers={"X-API-Key": "nope"})
            assert wrong.status_code == 403, (method, path, wrong.text)
            assert wrong.json() == {"detail": "invalid API key"}
            for status in ("401", "403"):
                assert status in op["responses"], (method, path, status)


def _needs_api_key(op: dict[str, Any]) -> bool:
    return any(
        p.get("in") == "header" and p.get("name", "").lower() == "x-api-key"
        for p in op.get("parameters", [])
    )


def _fill_path(path: str) -> str:
    # Any value: the key is checked before path parameters are validated.
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "1" + path[path.index("}", start) + 1 :]
    return path


# --- bugs the fuzzer found once, kept as regression tests ----------------------------------


async def test_the_event_schema_requires_the_type_discriminator(stack):
    async with httpx.AsyncClient(base_url=stack) as client:
        spec = (await client.get("/openapi.json")).json()
    for name in ("MovieFetched", "MovieDeleted"):
        assert "type" in spec["components"]["schemas"][name].get("required", []), name


async def test_a_dead_letter_id_beyond_64_bits_is_a_422_not_a_503(stack):
    too_big = f"{2**64}-0"
    async with httpx.AsyncClient(base_url=stack, headers={"X-API-Key": API_KEY}) as client:
        listed = await client.get("/v1/admin/dead-letters", params={"after": too_big})
        replayed = await client.post("/v1/admin/dead-letters/replay", json={"ids": [too_big]})
    assert (listed.status_code, replayed.status_code) == (422, 422)
