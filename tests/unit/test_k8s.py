"""The Kubernetes manifests (deploy/k8s) agree with what the project really builds and reads.

Plain YAML checks, no cluster needed: every image is one docker-compose.yml builds or uses;
every port is the one the image's Dockerfile serves; every environment variable is a field of
that service's settings class; secrets come from the Secret; probes hit /health and /ready;
the embedder scales on the real stream and group; internal services stay internal. When
kubectl is installed, `kubectl kustomize` must also render the kustomization.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from marquee_embedder.settings import EmbedderSettings
from marquee_explainer.settings import ExplainerSettings
from marquee_gateway.settings import GatewaySettings
from marquee_ingest.settings import IngestSettings
from marquee_search.settings import SearchSettings
from marquee_shared.events import CATALOG_STREAM

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"

SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "search": SearchSettings,
    "explainer": ExplainerSettings,
    "embedder": EmbedderSettings,
    "ingest": IngestSettings,
}
PUBLIC = {"gateway"}


# --- loading -------------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@cache
def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d)
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def workloads() -> dict[str, dict[str, Any]]:
    return {**of_kind("Deployment"), **of_kind("StatefulSet")}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def marquee_containers() -> list[tuple[str, dict[str, Any]]]:
    """(service, container) for every container running one of Marquee's own images."""
    found = []
    for workload in workloads().values():
        for container in containers(workload):
            match = re.fullmatch(r"marquee/([a-z]+):.+", container["image"])
            if match:
                found.append((match.group(1), container))
    return found


def secret_text() -> str:
    return (K8S / "secret.example.yaml").read_text(encoding="utf-8")


@cache
def compose_images() -> dict[str, str]:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return {name: spec["image"] for name, spec in services.items() if "image" in spec}


def dockerfile_port(service: str) -> int:
    text = (ROOT / "deploy" / f"{service}.Dockerfile").read_text(encoding="utf-8")
    cmd = [ln for ln in text.splitlines() if ln.startswith("CMD ")][-1]
    match = re.search(r'"--port", "(\d+)"', cmd)
    assert match, f"{service}.Dockerfile's CMD names no --port: {cmd}"
    assert f"EXPOSE {match.group(1)}" in text
    return int(match.group(1))


def env_fields(settings: type[BaseSettings]) -> dict[str, str]:
    """Every variable name the settings class reads (all alias choices) -> its field."""
    prefix = settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names[(prefix + name).upper()] = name
        elif isinstance(alias, str):
            names[alias] = name
        else:
            names.update({str(choice): name for choice in alias.choices})
    return names


def env_names(settings: type[BaseSettings]) -> set[str]:
    return set(env_fields(settings))


def secret_env_names(settings: type[BaseSettings]) -> set[str]:
    return {
        env
        for env, name in env_fields(settings).items()
        if "SecretStr" in str(settings.model_fields[name].annotation)
    }


def references(env: dict[str, dict[str, Any]]) -> set[str]:
    """Variables used only to build others: Kubernetes expands ``$(NAME)`` in a value."""
    return {
        name
        for entry in env.values()
        for name in re.findall(r"\$\((\w+)\)", entry.get("value", ""))
    }


def expanded(value: str) -> str:
    """A value with its ``$(NAME)`` references filled in with a placeholder hex secret."""
    return re.sub(r"\$\(\w+\)", "0123abcd", value)


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Variable name -> its spec, from env and from envFrom ConfigMaps."""
    env: dict[str, dict[str, Any]] = {}
    configmaps = of_kind("ConfigMap")
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names an unknown ConfigMap {name}"
        for key, value in configmaps[name]["data"].items():
            env[key] = {"name": key, "value": value}
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


# --- the kustomization ------------------------------------------------------------------------


def test_every_manifest_is_in_the_kustomization_and_parses():
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {n for n in on_disk if n.endswith(".example.yaml")}
    assert listed == on_disk - examples
    assert examples == {"secret.example.yaml"}  # real secrets never live in the repository
    for doc in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    assert kustomization()["namespace"] == "marquee"


def test_kubectl_renders_the_kustomization():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the YAML checks above still ran)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    generated = kustomization().get("configMapGenerator", [])
    assert len(rendered) == len(documents()) + len(generated)
    assert all(
        d["metadata"].get("namespace") == "marquee" for d in rendered if d["kind"] != "Namespace"
    )


def test_the_expected_workloads_exist():
    assert set(of_kind("Deployment")) == {"gateway", "search", "explainer", "ingest", "embedder"}
    assert set(of_kind("StatefulSet")) == {"redis", "chroma"}


# --- images and ports ----------------------------------------------------------------------


def test_every_image_is_one_compose_builds_or_uses():
    images = set(compose_images().values())
    for name, workload in workloads().items():
        for container in containers(workload):
            assert container["image"] in images, (name, container["image"])
    # Marquee's own images carry the name compose gives the service that builds them.
    for service, container in marquee_containers():
        assert container["image"] == compose_images()[service]


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_ports_are_the_ones_the_image_serves(service):
    port = dockerfile_port(service)
    (container,) = [c for s, c in marquee_containers() if s == service]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert "command" not in container  # the image's CMD (and its --port) is what runs
    assert "args" not in container
    if service in of_kind("Service"):
        (svc_port,) = of_kind("Service")[service]["spec"]["ports"]
        assert svc_port["targetPort"] in {port, container["ports"][0]["name"]}
    annotations = workloads()[service]["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/port") == str(port)


def test_services_select_their_pods_and_target_their_ports():
    for name, service in of_kind("Service").items():
        workload = workloads()[name]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        ports = [p for c in containers(workload) for p in c.get("ports", [])]
        port_names = {p.get("name") for p in ports}
        port_numbers = {p["containerPort"] for p in ports}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names | port_numbers, (name, port)
        # Nothing but the gateway would be reachable from outside the cluster anyway.
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name


def test_the_services_find_each_other_at_their_real_ports():
    services = of_kind("Service")
    common = of_kind("ConfigMap")["marquee-common"]["data"]
    assert "MARQUEE_REDIS_URL" not in common  # it carries the password: built from the Secret
    for service, container in marquee_containers():
        url = container_env(container)["MARQUEE_REDIS_URL"]["value"]
        redis = _port(services["redis"])
        assert url == f"redis://:$(MARQUEE_REDIS_PASSWORD)@redis:{redis}/0", service
    assert common["MARQUEE_CHROMA_URL"] == f"http://chroma:{_port(services['chroma'])}"
    (gateway,) = [c for s, c in marquee_containers() if s == "gateway"]
    env = container_env(gateway)
    for backend in ("search", "explainer", "ingest"):
        url = env[f"MARQUEE_GATEWAY_{backend.upper()}_URL"]["value"]
        assert url == f"http://{backend}:{_port(services[backend])}", backend


def _port(service: dict[str, Any]) -> int:
    (port,) = service["spec"]["ports"]
    return int(port["port"])


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_is_a_real_setting_of_that_service(service):
    (container,) = [c for s, c in marquee_containers() if s == service]
    env = container_env(container)
    helpers = references(env)
    for name in helpers:  # defined before use, or Kubernetes leaves "$(NAME)" as it is
        names = [e["name"] for e in container.get("env", [])]
        assert name in names, (service, name)
        users = [n for n, e in env.items() if f"$({name})" in e.get("value", "")]
        assert all(names.index(name) < names.index(u) for u in users), (service, name)
    unknown = set(env) - env_names(SETTINGS[service]) - helpers
    assert not unknown, f"{service}: not settings of {SETTINGS[service].__name__}: {unknown}"
    # And every value given inline is one the settings accept (validated field by field, by
    # name: the environment of the test run must not decide the outcome).
    fields = env_fields(SETTINGS[service])
    values = {
        fields[n]: expanded(e["value"]) for n, e in env.items() if "value" in e and n in fields
    }
    settings = SETTINGS[service].model_validate(values)
    for field, value in values.items():
        assert str(getattr(settings, field)).rstrip("/") == value.rstrip("/") or value in (
            "",
            "true",
            "false",
        ), (service, field, value)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_secrets_come_from_the_secret(service):
    (container,) = [c for s, c in marquee_containers() if s == service]
    secret_doc = yaml.safe_load(secret_text())
    # The optional keys are documented commented out (an empty value would set the variable).
    optional = re.findall(r"^\s*#\s*([a-z-]+):", secret_text(), re.MULTILINE)
    documented_keys = set(secret_doc["stringData"]) | set(optional)
    env = container_env(container)
    for name in (
        secret_env_names(SETTINGS[service]) | {"MARQUEE_GATEWAY_API_KEYS"} | references(env)
    ):
        if name not in env:
            continue
        ref = env[name].get("valueFrom", {}).get("secretKeyRef")
        assert ref, f"{service}: {name} must come from a secretKeyRef, not a literal"
        assert ref["name"] == secret_doc["metadata"]["name"]
        assert ref["key"] in documented_keys, (service, ref)
    # Every service that talks to another (or is talked to) shares the internal token.
    assert env["MARQUEE_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "internal-token"


# --- probes and resources --------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_probes_hit_health_and_ready(service):
    (container,) = [c for s, c in marquee_containers() if s == service]
    port_name = container["ports"][0]["name"]

    def target(probe: str) -> tuple[str, object]:
        http = container[probe]["httpGet"]
        return http["path"], http["port"]

    assert target("livenessProbe") == ("/health", port_name)
    assert target("readinessProbe") == ("/ready", port_name)
    if "startupProbe" in container:
        assert target("startupProbe") == ("/health", port_name)


def test_every_container_has_requests_and_limits():
    for name, workload in workloads().items():
        for container in containers(workload):
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), name


def test_marquee_pods_run_as_the_images_non_root_user():
    for service, _ in marquee_containers():
        pod = workloads()[service]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # USER 10001:10001 in the images
        (container,) = containers(workloads()[service])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


# --- scaling -------------------------------------------------------------------------------


def test_the_embedder_scales_on_the_real_stream_and_group():
    (scaled,) = of_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "embedder"
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert "replicas" not in of_kind("Deployment")["embedder"]["spec"]  # KEDA owns the count
    assert scaled["spec"]["minReplicaCount"] >= 1  # the recovery loop must always run
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    meta = trigger["metadata"]
    assert meta["stream"] == CATALOG_STREAM
    assert meta["consumerGroup"] == EmbedderSettings.model_fields["group"].default
    assert int(meta["lagCount"]) > 0
    namespace = kustomization()["namespace"]
    redis_port = _port(of_kind("Service")["redis"])
    assert meta["address"] == f"redis.{namespace}.svc.cluster.local:{redis_port}"


@pytest.mark.parametrize("service", ["search", "gateway"])
def test_search_and_gateway_scale_on_cpu(service):
    hpa = of_kind("HorizontalPodAutoscaler")[service]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service,
    }
    assert "replicas" not in of_kind("Deployment")[service]["spec"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2  # one replica would make every rollout an outage


# --- state ---------------------------------------------------------------------------------


def test_redis_keeps_the_stream_on_a_volume_with_aof():
    redis = of_kind("StatefulSet")["redis"]
    (container,) = containers(redis)
    args = " ".join(container["args"])
    assert "--appendonly yes" in args
    assert "--appendfsync everysec" in args
    assert "--maxmemory-policy noeviction" in args
    # A bound below the container's limit, so Redis refuses writes before the kernel kills it.
    assert re.search(r"--maxmemory \d+[mg]b", args)
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert "redis-cli ping" in " ".join(container["readinessProbe"]["exec"]["command"])


def test_chroma_keeps_its_index_on_a_volume():
    chroma = of_kind("StatefulSet")["chroma"]
    container = _container(chroma, "chroma")
    (claim,) = chroma["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert "--path /data" in " ".join(container["args"])
    assert "/api/v2/heartbeat" in " ".join(container["livenessProbe"]["exec"]["command"])


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(workload) if c["name"] == name]
    return found


# --- who may talk to Redis and Chroma (issue 15, item 10) ------------------------------------


def test_redis_demands_the_password_from_the_secret():
    redis = of_kind("StatefulSet")["redis"]
    (container,) = containers(redis)
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDISCLI_AUTH)"
    env = container_env(container)
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "marquee-secrets",
        "key": "redis-password",
    }
    for service, c in marquee_containers():
        ref = container_env(c)["MARQUEE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "redis-password", service
    # KEDA reads the consumer group's lag with the same password.
    (trigger,) = next(iter(of_kind("ScaledObject").values()))["spec"]["triggers"]
    auth = of_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "marquee-secrets", "key": "redis-password"}
    ]
    assert "redis-password" in yaml.safe_load(secret_text())["stringData"]


def test_chroma_is_reached_only_through_the_token_proxy():
    chroma = of_kind("StatefulSet")["chroma"]
    server = _container(chroma, "chroma")
    assert "ports" not in server
    args = server["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1"  # the pod's loopback only
    upstream_port = args[args.index("--port") + 1]
    auth = _container(chroma, "auth")
    assert auth["image"] in set(compose_images().values())
    env = container_env(auth)
    assert env["CHROMA_UPSTREAM"]["value"] == f"127.0.0.1:{upstream_port}"
    assert env["MARQUEE_CHROMA_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "marquee-secrets",
        "key": "chroma-token",
    }
    # The Service (and so every client) lands on the proxy's port.
    (port,) = of_kind("Service")["chroma"]["spec"]["ports"]
    assert port["targetPort"] == auth["ports"][0]["name"]
    assert auth["ports"][0]["containerPort"] == 8000  # `listen 8000;` in the template
    # The proxy's configuration is the template file compose runs too, rendered by the image.
    (generator,) = kustomization()["configMapGenerator"]
    assert generator["files"] == ["default.conf.template=chroma-auth.conf.template"]
    template = (K8S / "chroma-auth.conf.template").read_text(encoding="utf-8")
    assert "listen 8000;" in template
    assert set(re.findall(r"\$\{(\w+)\}", template)) == set(env)
    (volume,) = chroma["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == generator["name"]
    (mount,) = auth["volumeMounts"]
    assert (mount["name"], mount["mountPath"]) == (volume["name"], "/etc/nginx/templates")
    # Every Chroma client sends the token.
    for service, container in marquee_containers():
        client_env = container_env(container)
        if "MARQUEE_CHROMA_URL" in client_env and service in {"search", "explainer", "embedder"}:
            ref = client_env["MARQUEE_CHROMA_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == "chroma-token", service
    assert "chroma-token" in yaml.safe_load(secret_text())["stringData"]


# --- network -------------------------------------------------------------------------------


def _selected(policy: dict[str, Any], app: str) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector:
        return True
    if selector.get("matchLabels", {}).get("app.kubernetes.io/name") == app:
        return True
    return any(
        e["key"] == "app.kubernetes.io/name" and e["operator"] == "In" and app in e["values"]
        for e in selector.get("matchExpressions", [])
    )


def test_ingress_is_denied_by_default_and_only_the_gateway_is_open():
    policies = of_kind("NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for app in workloads():
        rules = [
            rule
            for policy in policies.values()
            if _selected(policy, app)
            for rule in policy["spec"].get("ingress", [])
        ]
        open_rules = [r for r in rules if not r.get("from")]
        if app in PUBLIC:
            assert open_rules, "the gateway must be reachable"
        else:
            assert not open_rules, f"{app} accepts traffic from anywhere"
            for rule in rules:
                for peer in rule["from"]:
                    assert "ipBlock" not in peer, app
                    # Another namespace only by an explicit name (KEDA, monitoring).
                    if "namespaceSelector" in peer:
                        assert (
                            "kubernetes.io/metadata.name"
                            in peer["namespaceSelector"]["matchLabels"]
                        )


def test_backends_take_requests_only_from_the_gateway():
    policies = of_kind("NetworkPolicy")
    for app in ("search", "explainer", "ingest"):
        peers = [
            peer
            for policy in policies.values()
            if _selected(policy, app)
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
            if "podSelector" in peer
        ]
        assert peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
