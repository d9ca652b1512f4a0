"""Redis and Chroma with authentication on, as docker-compose.yml and deploy/k8s run them
(issue 15, item 10): a client without the credentials is refused, ours gets through.

Redis: a real redis-server with ``requirepass``; the services take the password in
MARQUEE_REDIS_URL. Chroma: the Chroma 1.x server has no authentication of its own (its
CHROMA_SERVER_AUTHN_* settings belong to the retired Python server; `chroma run` ignores them),
so compose and k8s put an nginx proxy in front of it that checks X-Chroma-Token. This runs
that proxy's very configuration (deploy/k8s/chroma-auth.conf.template, rendered as the nginx
image renders it) in front of a real `chroma run`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import chromadb
import httpx
import pytest
import redis
from chromadb.config import Settings as ChromaSettings
from redis.asyncio import Redis

import devstack
from marquee_shared.chroma import ChromaAuthRefusedError, open_collection
from marquee_shared.events import MovieDeleted
from marquee_shared.settings import CommonSettings
from marquee_shared.streams import publish_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "k8s" / "chroma-auth.conf.template"
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


# --- Redis with requirepass ----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    password = secrets.token_hex(16)
    port = devstack.free_port()
    base = tmp_path_factory.mktemp("redis-auth")
    proc = devstack.redis_proc(port, base / "data", base, persistent=False)
    proc.argv += ["--requirepass", password]
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    proc.start()
    try:
        proc.wait_until(lambda: devstack.redis_answers(url), "answering PING", 20)
        yield port, password
    finally:
        proc.stop()


def test_redis_refuses_a_client_without_the_password(redis_with_password):
    port, _ = redis_with_password
    for url in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong@127.0.0.1:{port}/0"):
        client = redis.Redis.from_url(url, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            client.xadd("marquee:catalog:v1", {"event": "{}"})
        client.close()


async def test_redis_accepts_the_password_from_the_services_url_setting(
    redis_with_password, monkeypatch
):
    port, password = redis_with_password
    monkeypatch.setenv("MARQUEE_REDIS_URL", f"redis://:{password}@127.0.0.1:{port}/0")
    settings = CommonSettings()
    # As every service connects: the URL setting, as text, to redis-py.
    client = Redis.from_url(str(settings.redis_url))
    try:
        event = MovieDeleted(source="test", tmdb_id=578, occurred_at=datetime.now(UTC))
        (entry,) = await publish_events(client, [event])
        assert await client.xlen("marquee:catalog:v1") == 1
        assert entry
    finally:
        await client.aclose()


# --- Chroma behind the token proxy ---------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(
            "nginx is not installed (the Chroma token proxy's configuration is tested with "
            "it): `sudo apt-get install -y nginx`; .ci/run installs it",
            pytrace=False,
        )
    return found


def render(template: str, port: int, token: str, upstream: str) -> str:
    """What the nginx image's envsubst step makes of the template, listening on ``port``."""
    assert template.count("listen 8000;") == 1
    text = template.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    text = text.replace("${MARQUEE_CHROMA_TOKEN}", token).replace("${CHROMA_UPSTREAM}", upstream)
    assert "${" not in text, "the template uses a variable the deployments do not set"
    return text


@pytest.fixture(scope="module")
def chroma_behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(proxy URL, direct URL, token)."""
    token = secrets.token_hex(32)
    base = tmp_path_factory.mktemp("chroma-auth")
    chroma_port, proxy_port = devstack.free_port(), devstack.free_port()
    direct = f"http://127.0.0.1:{chroma_port}"
    chroma = devstack.chroma_proc(chroma_port, base / "data", base)
    (base / "default.conf").write_text(
        render(TEMPLATE.read_text(encoding="utf-8"), proxy_port, token, f"127.0.0.1:{chroma_port}")
    )
    # The http-level context the nginx image wraps conf.d/*.conf in, with paths of our own.
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp dirs
    (base / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {base}/nginx.pid;\n"
        f"error_log {base}/nginx-error.log warn;\nevents {{}}\nhttp {{\n  access_log off;\n"
        + "".join(
            f"  {kind}_temp_path {base}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {base}/default.conf;\n}}\n"
    )
    proxy = devstack.Proc(
        "chroma-auth",
        [nginx_binary(), "-p", str(base), "-c", str(base / "nginx.conf"), "-e", "stderr"],
        base / "chroma-auth.log",
    )
    chroma.start()
    proxy.start()
    try:
        chroma.wait_until(lambda: devstack.http_ok(direct + "/api/v2/heartbeat"), "up", 60)
        url = f"http://127.0.0.1:{proxy_port}"
        proxy.wait_until(lambda: devstack.http_ok(url + "/api/v2/heartbeat"), "proxying", 20)
        yield url, direct, token
    finally:
        proxy.stop()
        chroma.stop()


def test_chroma_refuses_a_client_without_the_token(chroma_behind_proxy):
    url, direct, token = chroma_behind_proxy
    name = f"auth_{uuid.uuid4().hex[:8]}"
    created = httpx.post(direct + COLLECTIONS, json={"name": name}, timeout=10)
    assert created.status_code == 200, created.text
    for headers in ({}, {"X-Chroma-Token": ""}, {"X-Chroma-Token": token[:-1]}):
        assert httpx.get(url + COLLECTIONS, headers=headers, timeout=10).status_code == 401
        r = httpx.post(url + COLLECTIONS, headers=headers, json={"name": name + "x"}, timeout=10)
        assert r.status_code == 401
        r = httpx.delete(f"{url}{COLLECTIONS}/{name}", headers=headers, timeout=10)
        assert r.status_code == 401
    # Nothing got through: the collection is still there, and no other was made.
    names = [c["name"] for c in httpx.get(direct + COLLECTIONS, timeout=10).json()]
    assert name in names
    assert name + "x" not in names
    # Chroma's own client, without the token, is refused as well.
    host, port = url.removeprefix("http://").split(":")
    with pytest.raises(Exception, match="X-Chroma-Token required"):
        chromadb.HttpClient(
            host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False)
        ).list_collections()


# Chroma's async clients share one HTTP transport per event loop, with the headers of the first
# client made in it (chroma-core/chroma#6869): a service holds one token, but this session's
# loop has served clients without one. Each test below runs its client in a loop of its own.


def test_the_services_chroma_client_without_the_token_is_told_why_at_once(chroma_behind_proxy):
    url, _, _ = chroma_behind_proxy

    async def attempt() -> float:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ChromaAuthRefusedError, match="MARQUEE_CHROMA_TOKEN is not set"):
            await open_collection(httpx.URL(url), "movies_auth", wait_s=30)  # type: ignore[arg-type]
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(attempt()) < 10  # refused at once, not retried for 30 s


def test_the_services_chroma_client_with_the_token_setting_gets_through(
    chroma_behind_proxy, monkeypatch
):
    url, direct, token = chroma_behind_proxy
    monkeypatch.setenv("MARQUEE_CHROMA_URL", url)
    monkeypatch.setenv("MARQUEE_CHROMA_TOKEN", token)
    settings = CommonSettings()
    assert token not in repr(settings)
    name = f"auth_{uuid.uuid4().hex[:8]}"

    async def write_and_read() -> None:
        _, collection = await open_collection(
            settings.chroma_url, name, token=settings.chroma_token
        )
        # A batch as big as the embedder writes (vectors and documents), through the proxy.
        ids = [str(i) for i in range(500)]
        await collection.upsert(
            ids=ids,
            embeddings=[[1.0] + [0.0] * 383 for _ in ids],
            documents=["a movie overview " * 60 for _ in ids],
            metadatas=[{"title": f"movie {i}"} for i in ids],
        )
        got = await collection.get(ids=["7"], include=["metadatas"])
        assert got["metadatas"] == [{"title": "movie 7"}]
        assert await collection.count() == 500

    asyncio.run(write_and_read())
    # It is the real server behind the proxy.
    names = [c["name"] for c in httpx.get(direct + COLLECTIONS, timeout=10).json()]
    assert name in names
