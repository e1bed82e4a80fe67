"""The warm launcher: a run forked from it behaves, to the worker, like `python -m` of the engine."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import PROJECT_ROOT

LAUNCH_RUN = PROJECT_ROOT / "deployments" / "launch_run.py"
PROBE = "tests.support.launcher_probe"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A launcher with no worker, serving on a socket of its own."""
    path = tmp_path_factory.mktemp("launcher") / "runs.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.launcher", "--socket", str(path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    assert "serving flow runs" in line, line
    try:
        yield path
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


@pytest.fixture(autouse=True)
def close_pipes() -> Iterator[None]:
    """Reap every client a test started and close its pipe (warnings are errors here)."""
    yield
    while STARTED:
        client = STARTED.pop()
        if client.poll() is None:
            client.kill()
        client.wait(timeout=30)
        if client.stdout is not None:
            client.stdout.close()


STARTED: list[subprocess.Popen[str]] = []


def launch(
    socket_path: Path | None, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(PROJECT_ROOT)}
    environment.pop("APP_LAUNCHER_SOCKET", None)
    if socket_path is not None:
        environment["APP_LAUNCHER_SOCKET"] = str(socket_path)
    client = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCH_RUN), PROBE, *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    STARTED.append(client)
    return client


def probe_pid(client: subprocess.Popen[str]) -> int:
    assert client.stdout is not None
    line = client.stdout.readline()
    assert line.startswith("probe pid="), line
    return int(line.split()[1].split("=")[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent, the launcher, reaps it shortly).
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_child_gets_the_callers_environment_cwd_streams_and_exit_code(
    launcher: Path, tmp_path: Path
) -> None:
    client = launch(launcher, "3", "0", cwd=tmp_path, env={"PROBE_VALUE": "from-the-worker"})
    output, _ = client.communicate(timeout=30)
    assert client.returncode == 3
    assert "value=from-the-worker" in output and f"cwd={tmp_path}" in output
    pid = int(output.split()[1].split("=")[1])
    assert pid != client.pid, "the run must be a forked child, not the client itself"


def test_sigterm_to_the_client_reaches_the_run(launcher: Path, tmp_path: Path) -> None:
    client = launch(launcher, "0", "30", cwd=tmp_path)
    child = probe_pid(client)
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=30)
    # The probe exits 143 on SIGTERM: the worker's cancellation reaches the engine's handler.
    assert client.returncode == 143
    assert not alive(child)


def test_killing_the_client_kills_the_run_at_once(launcher: Path, tmp_path: Path) -> None:
    client = launch(launcher, "0", "30", cwd=tmp_path)
    child = probe_pid(client)
    client.kill()
    client.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "a run whose client the worker killed must not go on"


def test_a_run_killed_by_a_signal_is_reported_as_killed(launcher: Path, tmp_path: Path) -> None:
    client = launch(launcher, "0", "30", cwd=tmp_path)
    child = probe_pid(client)
    os.kill(child, signal.SIGKILL)
    client.wait(timeout=10)
    assert client.returncode == -signal.SIGKILL


def test_runs_in_parallel_are_independent(launcher: Path, tmp_path: Path) -> None:
    clients = [launch(launcher, str(code), "1", cwd=tmp_path) for code in range(5)]
    pids = {probe_pid(c) for c in clients}
    codes = [c.wait(timeout=30) for c in clients]
    assert codes == [0, 1, 2, 3, 4]
    assert len(pids) == 5


def test_the_socket_is_private_to_the_user(launcher: Path) -> None:
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o600


@pytest.mark.parametrize("socket_path", [None, Path("/nonexistent/runs.sock")])
def test_without_a_launcher_the_client_becomes_the_module_itself(
    socket_path: Path | None, tmp_path: Path
) -> None:
    client = launch(socket_path, "4", "0", cwd=tmp_path)
    output, _ = client.communicate(timeout=60)
    assert client.returncode == 4
    assert f"probe pid={client.pid} " in output, "exec keeps the pid the worker knows"
