"""What the performance benchmarks share: the machine description, local servers, peak memory
of processes, percentiles and result files (bench/results/<name>.json and .md)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import devstack  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CATALOG_CSV = SHARED / "catalog" / "movies.csv"
TOMT = SHARED / "queries" / "tomt_dev.jsonl"
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / ".data" / "bench"


def require_data() -> None:
    if not CATALOG_CSV.exists() or not TOMT.exists():
        raise SystemExit(f"{SHARED} is absent: the benchmarks need the ../shared data kit")


def machine() -> dict[str, Any]:
    """CPU model, cores, the ISA the int8 kernels use, Python, and the load when measured."""
    from marquee_shared.model.encoder import cpu_isa

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": cpu_isa(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: Mapping[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores ({info['isa']}), {info['memory_gb']} GB RAM, "
        f"Python {info['python']}; load average {info['load_average'][0]} at the start"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set) of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_listening(port: int) -> int | None:
    """The process whose command line carries ``--port <port>`` (how devstack starts servers)."""
    wanted = ["--port", str(port)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(argv[i : i + 2] == wanted for i in range(len(argv) - 1)):
            return int(proc.name)
    return None


def fresh_dir(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def stores(base: Path, *, chroma_dir: Path | None = None) -> Iterator[tuple[str, str]]:
    """A throwaway redis-server and a Chroma server (on ``chroma_dir`` if given); always
    stopped. Yields their URLs."""
    logs = base / "logs"
    redis_port, chroma_port = devstack.free_port(), devstack.free_port()
    redis = devstack.redis_proc(redis_port, base / "redis", logs, persistent=False)
    chroma = devstack.chroma_proc(chroma_port, chroma_dir or base / "chroma", logs)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    chroma_url = f"http://127.0.0.1:{chroma_port}"
    try:
        redis.start()
        redis.wait_until(lambda: devstack.redis_answers(redis_url), "answering PING", 20)
        chroma.start()
        chroma.wait_until(lambda: devstack.http_ok(chroma_url + "/api/v2/heartbeat"), "up", 120)
        yield redis_url, chroma_url
    finally:
        chroma.stop()
        redis.stop()


def service_env(redis_url: str, chroma_url: str, **extra: str) -> dict[str, str]:
    return {
        "MARQUEE_REDIS_URL": redis_url,
        "MARQUEE_CHROMA_URL": chroma_url,
        "MARQUEE_LOG_FORMAT": "json",
        "MARQUEE_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def start_service(
    name: str, module: str, env: Mapping[str, str], logs: Path, timeout: float = 180
) -> tuple[devstack.Proc, str]:
    """One service as devstack starts it (uvicorn, own session), waited until /ready."""
    port = devstack.free_port()
    proc = devstack.service_proc(name, module, port, env, logs).start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_until(lambda: devstack.http_ok(url + "/ready"), "ready", timeout)
    return proc, url


def write_results(name: str, data: Mapping[str, Any], markdown: Sequence[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(markdown).rstrip() + "\n")
    print("\n".join(markdown))


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
