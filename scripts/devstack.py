"""Run the whole Marquee stack as local processes: the ``make run`` command, and the way the
end-to-end tests start it.

Redis (AOF on, unless REDIS_URL points at one that answers), a Chroma HTTP server, N embedder
workers, search, explainer and the gateway, each its own process in its own session (so Ctrl+C
reaches only this supervisor, which then stops everything in reverse order). Data lives under
one folder, so running it again keeps the index and re-ingesting duplicates nothing.

A process that dies is restarted with backoff while the others keep serving, as compose's
``restart: unless-stopped`` does (``Supervisor``); the stack stops, saying which process and
why, only when one keeps crashing (``RestartPolicy``: 5 times within a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A component could not start; the message says which and shows its log."""


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, for a server about to start. Taken below the kernel's
    ephemeral range where there is room: a port the kernel gave out with bind(0) can be taken
    again as the source port of any outgoing connection before the server binds it (seen:
    an embedder replica exiting "address already in use"), one below the range cannot."""
    low = _ephemeral_low()
    if low > 20_000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(20_000, low)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Proc:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    """Stopped on purpose (``stop``): a supervisor leaves it down."""

    def start(self) -> Proc:
        self.stopped = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=ROOT,
            # Own session: a terminal Ctrl+C hits only the supervisor, which stops children
            # in order (services before the stores they write to).
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive and self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        self.stopped = True
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait(5)

    def note(self, line: str) -> None:
        """Append a line to the process's log (what happened to it, beside what it said)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, probe: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                code = self.popen.returncode if self.popen else None
                raise StackError(
                    f"{self.name} exited (code {code}) before {what}.\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            if probe():
                return
            time.sleep(0.2)
        raise StackError(
            f"{self.name} did not become {what} within {timeout:g}s.\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass(frozen=True)
class RestartPolicy:
    """Compose's ``restart: unless-stopped``, with a limit: a process that exits without being
    stopped is started again after a delay that doubles with each crash counted in the window
    (``first_delay_s``, then 2x, ... up to ``max_delay_s``); its ``max_crashes``-th crash within
    ``window_s`` seconds stops the stack instead, since restarting it again would only hide
    the fault."""

    max_crashes: int = 5
    window_s: float = 60.0
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, crashes: int) -> float:
        return float(min(self.first_delay_s * 2 ** max(crashes - 1, 0), self.max_delay_s))


class CrashLoopError(StackError):
    """One process kept crashing; the message names it, its exits and its last log lines."""


class Supervisor:
    """Keeps the stack's processes running under a ``RestartPolicy``.

    ``check`` looks once (restarts what is due, raises ``CrashLoopError`` on a crash loop);
    ``run`` checks every ``interval_s`` until ``stop`` is set, in `make run`'s main thread or in
    a test's background thread. A process stopped on purpose (``Proc.stop``) stays down.
    """

    def __init__(
        self,
        procs: list[Proc],
        policy: RestartPolicy | None = None,
        *,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.procs = procs  # the stack's own list: processes added later are supervised too
        self.policy = policy or RestartPolicy()
        self.say = say
        self.clock = clock
        self.restarts = 0
        self._crashes: dict[str, deque[float]] = {}
        self._restart_at: dict[str, float] = {}

    def check(self) -> None:
        now = self.clock()
        for proc in list(self.procs):
            if proc.alive or proc.stopped or proc.popen is None:
                self._restart_at.pop(proc.name, None)
                continue
            due = self._restart_at.get(proc.name)
            if due is None:
                self._crashed(proc, now)
            elif now >= due:
                del self._restart_at[proc.name]
                proc.start()
                self.restarts += 1
                pid = proc.popen.pid if proc.popen else None
                self.say(f"{proc.name} restarted (pid {pid})")
                proc.note(f"--- devstack: restarted (pid {pid}) ---")

    def _crashed(self, proc: Proc, now: float) -> None:
        policy = self.policy
        crashes = self._crashes.setdefault(proc.name, deque())
        crashes.append(now)
        while crashes and crashes[0] <= now - policy.window_s:
            crashes.popleft()
        how = describe_exit(proc.popen.returncode if proc.popen else None)
        if len(crashes) >= policy.max_crashes:
            raise CrashLoopError(
                f"{proc.name} crashed {len(crashes)} times within {policy.window_s:g}s (last: "
                f"{how}); stopping the stack rather than restarting it again.\n"
                f"--- last lines of {proc.log_path} ---\n{proc.log_tail()}"
            )
        delay = policy.delay(len(crashes))
        self._restart_at[proc.name] = now + delay
        self.say(
            f"{proc.name} stopped unexpectedly ({how}); restarting in {delay:g}s "
            f"({len(crashes)} crash(es) within {policy.window_s:g}s; {policy.max_crashes} stop "
            f"the stack); log: {proc.log_path}"
        )
        proc.note(f"--- devstack: {how}; restarting in {delay:g}s ---")

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        while not stop.wait(interval_s):
            self.check()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - local URLs only
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def redis_answers(url: str) -> bool:
    import redis  # noqa: PLC0415 - keep `--help` fast

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_proc(port: int, data_dir: Path, log_dir: Path, *, persistent: bool) -> Proc:
    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError(
            "redis-server is not installed. Install it (Debian/Ubuntu: "
            "`sudo apt-get install -y redis-server`; macOS: `brew install redis`) or point "
            "REDIS_URL at a running Redis 7+."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", ""]
    # AOF with fsync every second: the catalog stream and consumer-group state survive a restart.
    argv += (
        ["--appendonly", "yes", "--appendfsync", "everysec"]
        if persistent
        else ["--appendonly", "no"]
    )
    return Proc("redis", argv, log_dir / "redis.log")


def chroma_proc(port: int, data_dir: Path, log_dir: Path) -> Proc:
    exe = BIN / "chroma"
    if not exe.exists():
        raise StackError(f"{exe} not found: install the project first (`make install`).")
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(exe), "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    return Proc("chroma", argv, log_dir / "chroma.log", env={"ANONYMIZED_TELEMETRY": "False"})


def service_proc(name: str, module: str, port: int, env: Mapping[str, str], log_dir: Path) -> Proc:
    argv = [
        str(BIN / "uvicorn"),
        f"{module}:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",  # each service logs one structured line per request itself
        # Uvicorn would believe X-Forwarded-For from 127.0.0.1, i.e. from every local client:
        # only the gateway reads it, and only from MARQUEE_GATEWAY_TRUSTED_PROXIES.
        "--no-proxy-headers",
        "--timeout-graceful-shutdown",
        "25",
    ]
    return Proc(name, argv, log_dir / f"{name}.log", env=env)


@dataclass
class Ports:
    gateway: int = 8080
    search: int = 8081
    explainer: int = 8082
    ingest: int = 8084
    embedder_base: int = 8090
    chroma: int = 8000
    redis: int = 6380

    @classmethod
    def free(cls) -> Ports:
        return cls(
            gateway=free_port(),
            search=free_port(),
            explainer=free_port(),
            ingest=free_port(),
            embedder_base=0,
            chroma=free_port(),
            redis=free_port(),
        )

    def embedder(self, i: int) -> int:
        return free_port() if self.embedder_base == 0 else self.embedder_base + i


class Stack:
    def __init__(
        self,
        data_dir: Path,
        *,
        embedders: int = 1,
        ports: Ports | None = None,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.embedder_count = embedders
        self.ports = ports or Ports()
        self.external_redis = redis_url if redis_url and redis_answers(redis_url) else None
        self.redis_url = self.external_redis or f"redis://127.0.0.1:{self.ports.redis}/0"
        self.chroma_url = f"http://127.0.0.1:{self.ports.chroma}"
        self.gateway_url = f"http://127.0.0.1:{self.ports.gateway}"
        self.search_url = f"http://127.0.0.1:{self.ports.search}"
        self.ingest_url = f"http://127.0.0.1:{self.ports.ingest}"
        self.extra_env = dict(env or {})
        # A fresh internal token per run (unless one is configured): every service of this
        # stack gets it, so `make run` exercises the token check the way a deployment does.
        self.internal_token = os.environ.get("MARQUEE_INTERNAL_TOKEN") or _token()
        self.procs: list[Proc] = []
        self.embedders: list[Proc] = []
        self.embedder_urls: list[str] = []
        self.say = say

    @property
    def api_key(self) -> str:
        """The key for writing endpoints: MARQUEE_GATEWAY_API_KEYS's first, else one generated
        once per data folder (kept in <data>/api-key, readable only by its owner)."""
        configured = os.environ.get("MARQUEE_GATEWAY_API_KEYS", "").split(",")[0].strip()
        if configured:
            return configured
        path = self.data_dir / "api-key"
        if not path.exists():
            import secrets  # noqa: PLC0415

            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        return {
            "MARQUEE_GATEWAY_API_KEYS": os.environ.get("MARQUEE_GATEWAY_API_KEYS") or self.api_key,
            "MARQUEE_REDIS_URL": self.redis_url,
            "MARQUEE_CHROMA_URL": self.chroma_url,
            "MARQUEE_GATEWAY_SEARCH_URL": self.search_url,
            "MARQUEE_GATEWAY_EXPLAINER_URL": f"http://127.0.0.1:{self.ports.explainer}",
            "MARQUEE_GATEWAY_INGEST_URL": self.ingest_url,
            "MARQUEE_INTERNAL_TOKEN": self.internal_token,
            "MARQUEE_LOG_FORMAT": "json",
            "HF_HUB_OFFLINE": "1",
            # Services share 2 cores here: one torch thread pool per process would oversubscribe.
            "TOKENIZERS_PARALLELISM": "false",
            **self.extra_env,
        }

    def _check_ports(self) -> None:
        wanted = {
            "gateway": self.ports.gateway,
            "search": self.ports.search,
            "explainer": self.ports.explainer,
            "ingest": self.ports.ingest,
            "chroma": self.ports.chroma,
        }
        if not self.external_redis:
            wanted["redis"] = self.ports.redis
        busy = {n: p for n, p in wanted.items() if port_in_use(p)}
        if busy:
            raise StackError(
                f"ports already in use: {busy}. Stop what holds them or choose other ports "
                "(see `make run ARGS=--help`)."
            )

    def _add(self, proc: Proc) -> Proc:
        self.procs.append(proc.start())
        return proc

    def start(self) -> None:
        self._check_ports()
        try:
            if self.external_redis:
                self.say(f"using Redis at {self.redis_url}")
            else:
                redis = self._add(
                    redis_proc(
                        self.ports.redis, self.data_dir / "redis", self.log_dir, persistent=True
                    )
                )
                redis.wait_until(lambda: redis_answers(self.redis_url), "answering PING", 20)
                self.say(f"redis     {self.redis_url} (AOF under {self.data_dir / 'redis'})")
            chroma = self._add(
                chroma_proc(self.ports.chroma, self.data_dir / "chroma", self.log_dir)
            )
            chroma.wait_until(lambda: http_ok(self.chroma_url + "/api/v2/heartbeat"), "up", 60)
            self.say(f"chroma    {self.chroma_url} (data under {self.data_dir / 'chroma'})")
            for _ in range(self.embedder_count):
                self.add_embedder()
            search = self._add(
                service_proc(
                    "search", "marquee_search.app", self.ports.search, self.env, self.log_dir
                )
            )
            explainer = self._add(
                service_proc(
                    "explainer",
                    "marquee_explainer.app",
                    self.ports.explainer,
                    self.env,
                    self.log_dir,
                )
            )
            # The scheduled TMDB sync. TMDB_API_KEY / TMDB_READ_TOKEN and
            # MARQUEE_INGEST_TMDB_BASE_URL pass through from this environment (or `env`); with
            # no key the schedule is off and the service only serves its status.
            ingest = self._add(
                service_proc(
                    "ingest", "marquee_ingest.app", self.ports.ingest, self.env, self.log_dir
                )
            )
            gateway = self._add(
                service_proc(
                    "gateway", "marquee_gateway.app", self.ports.gateway, self.env, self.log_dir
                )
            )
            for proc, url in [
                *zip(self.embedders, self.embedder_urls, strict=True),
                (search, self.search_url),
                (explainer, f"http://127.0.0.1:{self.ports.explainer}"),
                (ingest, self.ingest_url),
                (gateway, self.gateway_url),
            ]:
                proc.wait_until(functools.partial(http_ok, url + "/ready"), "ready", 180)
                self.say(f"{proc.name:<9} {url} ready")
        except BaseException:
            self.stop()
            raise

    def add_embedder(self) -> Proc:
        i = len(self.embedders)
        port = self.ports.embedder(i)
        # Split the cores between replicas: torch thread pools that together exceed the cores
        # spin against each other and embed slower than one pool would.
        threads = max(1, (os.cpu_count() or 1) // self.embedder_count)
        env = {"MARQUEE_EMBEDDER_TORCH_THREADS": str(threads), **self.env}
        proc = self._add(
            service_proc(f"embedder-{i + 1}", "marquee_embedder.app", port, env, self.log_dir)
        )
        self.embedders.append(proc)
        self.embedder_urls.append(f"http://127.0.0.1:{port}")
        return proc

    def ingest(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ingest CLI against this stack (e.g. ``ingest("demo")``)."""
        return subprocess.run(
            [str(BIN / "marquee-ingest"), *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    def indexed_count(self) -> int:
        import chromadb  # noqa: PLC0415
        from chromadb.config import Settings  # noqa: PLC0415

        client = chromadb.HttpClient(
            host="127.0.0.1", port=self.ports.chroma, settings=Settings(anonymized_telemetry=False)
        )
        name = self.extra_env.get("MARQUEE_CHROMA_COLLECTION", "movies_minilm_l6_v1")
        try:
            return client.get_collection(name).count()
        except Exception:  # noqa: BLE001 - not created yet means nothing indexed
            return 0

    def stop(self) -> None:
        # Reverse order: the gateway stops taking requests first, the stores stop last.
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole Marquee stack locally.")
    parser.add_argument(
        "--embedders",
        type=int,
        default=int(os.environ.get("EMBEDDERS", "1")),
        help="embedder workers to start (env EMBEDDERS; default 1)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MARQUEE_DATA_DIR", ROOT / ".data"))
    )
    parser.add_argument(
        "--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8080"))
    )
    parser.add_argument("--no-ingest", action="store_true", help="do not ingest the demo catalog")
    args = parser.parse_args(argv)
    if args.embedders < 1:
        parser.error("--embedders must be at least 1")

    stack = Stack(
        args.data_dir,
        embedders=args.embedders,
        ports=Ports(gateway=args.gateway_port),
        redis_url=os.environ.get("REDIS_URL"),
    )
    supervisor = Supervisor(stack.procs, RestartPolicy())
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    try:
        print(f"starting Marquee ({args.embedders} embedder worker(s)); logs in {stack.log_dir}")
        stack.start()
        if not args.no_ingest:
            result = stack.ingest("demo", "--quiet")
            print(result.stdout.strip() or result.stderr.strip())
            if result.returncode != 0:
                raise StackError(f"ingesting the demo catalog failed:\n{result.stderr}")
            _wait_indexed(stack, supervisor)
        print(f"\nMarquee is up: {stack.gateway_url}  (API docs: {stack.gateway_url}/docs)")
        print(f"try:  curl '{stack.gateway_url}/v1/search?q=a+shark+terrorizes+a+beach+town&k=3'")
        print(f"API key for writing endpoints (X-API-Key): {stack.api_key}")
        print("A process that dies is restarted; Ctrl+C stops everything.")
        supervisor.run(stop_requested)
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print("\nstopping...")
    stack.stop()
    print("stopped; data kept in", args.data_dir)
    return 0


def _token() -> str:
    import secrets  # noqa: PLC0415

    return secrets.token_urlsafe(24)


def backlog(
    redis_url: str, stream: str = "marquee:catalog:v1", group: str = "embedders"
) -> int | None:
    """Entries not yet applied by the embedders: the group's pending entries plus those after
    its last-delivered id, counted (Redis's own lag drifts, see marquee_shared.streams).
    None while there is no such group, or Redis does not answer.

    Blocking, and callable from any thread, a running event loop's included (Playwright's sync
    API and async tests run one): the count runs on a loop of its own in a worker thread.
    """
    import asyncio  # noqa: PLC0415 - keep `--help` fast
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from redis.asyncio import Redis  # noqa: PLC0415
    from redis.exceptions import RedisError  # noqa: PLC0415

    from marquee_shared.streams import group_backlogs  # noqa: PLC0415

    async def count() -> int | None:
        client = Redis.from_url(redis_url, socket_timeout=2)
        try:
            groups = await group_backlogs(client, stream)
        except (RedisError, OSError):
            return None  # Redis not answering (yet)
        finally:
            await client.aclose()
        return next((g.backlog for g in groups if g.group == group), None)

    with ThreadPoolExecutor(1, thread_name_prefix="backlog") as pool:
        return pool.submit(asyncio.run, count()).result()


def _wait_indexed(stack: Stack, supervisor: Supervisor, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        left = backlog(stack.redis_url)
        print(
            f"indexed {stack.indexed_count()} movies, {left} events to go   ", end="\r", flush=True
        )
        if left == 0:
            print()
            return
        time.sleep(1)
    print(f"\nstill indexing after {timeout:g}s; carrying on (it continues in the background)")


if __name__ == "__main__":
    sys.exit(main())
