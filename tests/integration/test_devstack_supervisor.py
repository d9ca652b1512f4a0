"""`make run` keeps the stack up when one process dies: it is restarted with backoff and the
restart is logged, as compose's `restart: unless-stopped` would; only a process that keeps
crashing stops the stack, with a message that says which and why. Real processes, real signals.
(The whole stack under the same supervisor: tests/e2e/test_restart.py.)"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack

pytestmark = pytest.mark.integration


def sleeper(tmp_path: Path, name: str) -> devstack.Proc:
    argv = [sys.executable, "-c", "import time; time.sleep(600)"]
    return devstack.Proc(name, argv, tmp_path / f"{name}.log")


@pytest.fixture
def procs() -> Iterator[list[devstack.Proc]]:
    procs: list[devstack.Proc] = []
    yield procs
    for proc in procs:
        proc.stop(timeout=5)


def check_until(supervisor: devstack.Supervisor, done, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        if done():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")


def test_a_killed_process_is_restarted_with_doubling_backoff_and_logged(tmp_path, procs):
    victim, bystander = sleeper(tmp_path, "victim").start(), sleeper(tmp_path, "bystander").start()
    procs += [victim, bystander]
    messages: list[str] = []
    policy = devstack.RestartPolicy(first_delay_s=0.3, max_delay_s=5)
    supervisor = devstack.Supervisor(procs, policy, say=messages.append)
    bystander_pid = bystander.popen.pid  # type: ignore[union-attr]

    for delay in (0.3, 0.6):
        pid = victim.popen.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        victim.popen.wait(5)  # type: ignore[union-attr]
        killed_at = time.monotonic()
        check_until(
            supervisor,
            lambda pid=pid: victim.alive and victim.popen.pid != pid,  # type: ignore[union-attr]
            "victim restarted",
        )
        assert time.monotonic() - killed_at >= delay  # not before its backoff

    assert supervisor.restarts == 2
    assert bystander.alive
    assert bystander.popen.pid == bystander_pid  # type: ignore[union-attr]
    assert messages[0].startswith(
        "victim stopped unexpectedly (killed by SIGKILL); restarting in 0.3s "
        "(1 crash(es) within 60s; 5 stop the stack)"
    )
    assert messages[1].startswith("victim restarted (pid ")
    assert "restarting in 0.6s (2 crash(es) within 60s" in messages[2]
    log = victim.log_path.read_text()
    assert "--- devstack: killed by SIGKILL; restarting in 0.3s ---" in log
    assert "--- devstack: restarted (pid " in log


def test_a_process_that_keeps_crashing_stops_the_stack_with_a_clear_message(tmp_path, procs):
    code = "print('cannot open the index: permission denied', flush=True); raise SystemExit(3)"
    flaky = devstack.Proc("flaky", [sys.executable, "-c", code], tmp_path / "flaky.log").start()
    procs.append(flaky)
    messages: list[str] = []
    policy = devstack.RestartPolicy(max_crashes=5, window_s=60, first_delay_s=0.01)
    supervisor = devstack.Supervisor(procs, policy, say=messages.append)

    with pytest.raises(devstack.CrashLoopError) as stopped:
        check_until(supervisor, lambda: False, "a crash loop", timeout=60)

    text = str(stopped.value)
    assert text.startswith(
        "flaky crashed 5 times within 60s (last: exit code 3); stopping the stack"
    )
    assert "cannot open the index: permission denied" in text  # its log, to see why
    assert supervisor.restarts == 4
    assert [m.split(";")[0] for m in messages if "stopped unexpectedly" in m] == [
        "flaky stopped unexpectedly (exit code 3)"
    ] * 4


def test_crashes_older_than_the_window_do_not_count(tmp_path, procs):
    now = [0.0]
    flaky = devstack.Proc("flaky", [sys.executable, "-c", "raise SystemExit(1)"], tmp_path / "f")
    procs.append(flaky.start())
    policy = devstack.RestartPolicy(max_crashes=2, window_s=60, first_delay_s=1)
    supervisor = devstack.Supervisor(procs, policy, say=lambda _: None, clock=lambda: now[0])
    flaky.popen.wait(10)  # type: ignore[union-attr]
    supervisor.check()  # crash 1: restart due at 1 s
    now[0] = 61.0
    supervisor.check()  # restarted
    flaky.popen.wait(10)  # type: ignore[union-attr]
    supervisor.check()  # crash 2, but crash 1 is out of the window: restarted again, no stop
    assert supervisor.restarts == 1
    now[0] = 62.0
    supervisor.check()
    assert supervisor.restarts == 2


def test_a_process_stopped_on_purpose_stays_down(tmp_path, procs):
    proc = sleeper(tmp_path, "stopped").start()
    procs.append(proc)
    messages: list[str] = []
    supervisor = devstack.Supervisor(procs, say=messages.append)
    proc.stop(timeout=5)
    supervisor.check()
    assert not proc.alive
    assert messages == []  # not taken for a crash: nothing scheduled
