"""deployments/local.py: stopping a service ends its whole process group, stragglers included."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from deployments import local

# A leader that exits on SIGTERM and leaves a child behind that ignores it (a flow run stuck in
# its cleanup, a worker's child): the child prints its pid to the log, then both sleep.
LEADER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('child', os.getpid(), flush=True); time.sleep(120)"
)])
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _child_pid(log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"the child never started: {log.read_text()}")


def test_stop_ends_a_group_member_that_outlives_its_leader(tmp_path: Path) -> None:
    log = tmp_path / "leader.log"
    leader = local.spawn([sys.executable, "-c", LEADER], env={}, log=log)
    child = _child_pid(log)

    started = time.monotonic()
    local.stop(leader, grace_s=1)

    assert leader.returncode is not None
    assert not _alive(child), "a process of the group outlived the stop"
    assert time.monotonic() - started < 10


def test_stop_of_a_group_that_ends_on_sigterm_does_not_wait_for_the_grace(tmp_path: Path) -> None:
    leader = local.spawn(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"],
        env={},
        log=tmp_path / "quick.log",
    )
    while "up" not in (tmp_path / "quick.log").read_text():
        time.sleep(0.05)

    started = time.monotonic()
    local.stop(leader, grace_s=30)

    assert leader.returncode == -15
    assert time.monotonic() - started < 5


def test_the_portal_access_log_never_holds_a_query_string(tmp_path: Path, db_url: str) -> None:
    """Invitation and reset links carry their token in the query: it must not reach the log."""
    import httpx

    port = local.free_port()
    log = tmp_path / "portal.log"
    env = {
        "APP_ENV": "test",
        "APP_DATABASE_URL": db_url,
        "APP_INSTANCE_DIR": str(tmp_path),
        "APP_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    portal = local.start_portal(env=env, port=port, log=log, workers=1, threads=1)
    try:
        local.wait_healthy(f"http://127.0.0.1:{port}/healthz", portal)
        secret = "tok-4f1c9d2e7a"
        response = httpx.get(f"http://127.0.0.1:{port}/auth/reset?token={secret}")
        assert response.status_code < 500
        deadline = time.monotonic() + 10
        while "/auth/reset" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        local.stop(portal)
    text = log.read_text()
    assert "/auth/reset" in text and secret not in text and "token=" not in text
