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


STUBBORN = "tests.deployments.stubborn_probe"


def start_launcher(path: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start a launcher serving on ``path`` (``args``: options, then ``--`` and a worker command)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.launcher", "--socket", str(path), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    assert "serving flow runs" in line, line
    return process


def end_launcher(process: subprocess.Popen[bytes]) -> None:
    """Stop a launcher (if still running) and close its pipe."""
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A launcher with no worker, serving on a socket of its own."""
    path = tmp_path_factory.mktemp("launcher") / "runs.sock"
    process = start_launcher(path)
    try:
        yield path
    finally:
        end_launcher(process)


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
    socket_path: Path | None,
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: str = PROBE,
) -> subprocess.Popen[str]:
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(PROJECT_ROOT)}
    environment.pop("APP_LAUNCHER_SOCKET", None)
    if socket_path is not None:
        environment["APP_LAUNCHER_SOCKET"] = str(socket_path)
    client = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCH_RUN), module, *args],
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


def test_stopping_the_launcher_passes_sigterm_to_its_runs(tmp_path: Path) -> None:
    process = start_launcher(tmp_path / "runs.sock")
    try:
        client = launch(tmp_path / "runs.sock", "0", "30", cwd=tmp_path)
        child = probe_pid(client)
        process.send_signal(signal.SIGTERM)  # the launcher alone, not its process group
        client.wait(timeout=30)
        assert client.returncode == 143, "the run must get the stop signal and end on it"
        assert not alive(child)
    finally:
        end_launcher(process)


def test_the_launcher_never_exits_before_its_runs_and_kills_stragglers(tmp_path: Path) -> None:
    process = start_launcher(tmp_path / "runs.sock", "--stop-grace", "1")
    try:
        client = launch(tmp_path / "runs.sock", "120", cwd=tmp_path, module=STUBBORN)
        child = probe_pid(client)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        # Gone by the time the launcher is: killed after the grace, since it ignores SIGTERM.
        assert not alive(child), "a run that ignores SIGTERM outlived the launcher"
        client.wait(timeout=10)
        assert client.returncode == -signal.SIGKILL
    finally:
        end_launcher(process)


def test_a_stopping_launcher_refuses_new_runs(tmp_path: Path) -> None:
    process = start_launcher(tmp_path / "runs.sock", "--stop-grace", "20")
    try:
        holding = launch(tmp_path / "runs.sock", "120", cwd=tmp_path, module=STUBBORN)
        probe_pid(holding)  # keeps the launcher in its stop grace
        process.send_signal(signal.SIGTERM)
        time.sleep(1)
        late = launch(tmp_path / "runs.sock", "0", "0", cwd=tmp_path)
        output, _ = late.communicate(timeout=30)
        # Refused, and not run by the client itself either: nothing would stop it.
        assert late.returncode == 1
        assert "launcher is stopping" in output and "probe pid=" not in output
    finally:
        process.kill()
        end_launcher(process)


def test_when_the_worker_exits_the_launcher_ends_the_runs_and_exits_with_its_code(
    tmp_path: Path,
) -> None:
    worker = [sys.executable, "-c", "import time; time.sleep(3); raise SystemExit(7)"]
    process = start_launcher(tmp_path / "runs.sock", "--stop-grace", "1", "--", *worker)
    try:
        client = launch(tmp_path / "runs.sock", "120", cwd=tmp_path, module=STUBBORN)
        child = probe_pid(client)
        assert process.wait(timeout=30) == 7
        assert not alive(child)
    finally:
        end_launcher(process)
