"""Start the product's long-running Prefect processes on one machine: server and worker.

Used by `make demo`, the benchmarks and the test suite, so all three run the same topology
as production (a real `prefect server`, a process worker running prefect.yaml's deployments).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_prefect_server(
    *, database_url: str | None, home: Path, port: int, log: Path, ui: bool = False
) -> subprocess.Popen[bytes]:
    """Start `prefect server` (SQLite under ``home`` when ``database_url`` is None).

    The UI is pointed at this server's own API: `--port` alone moves the API but not the
    address the UI's browser code calls (PREFECT_SERVER_UI_API_URL defaults to port 4200).
    """
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if database_url:
        # Prefect's server needs an async driver.
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url.replace(
            "postgresql+psycopg://", "postgresql+asyncpg://"
        )
    return spawn(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log=log,
    )


def start_worker(
    *, env: Mapping[str, str], log: Path, pool: str = "outbound-process", limit: int = 10
) -> subprocess.Popen[bytes]:
    """Start a process worker for ``pool`` under the warm launcher, with ``env`` (PREFECT_API_URL, APP_*)."""
    return spawn(
        [
            sys.executable,
            "-m",
            "deployments.launcher",
            "--",
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--type",
            "process",
            "--limit",
            str(limit),
        ],
        env={
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            **os.environ,
            **env,
        },
        log=log,
    )


# gunicorn's access-log fields: client, time, method, path (never the query), status, size, secs.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s'


def start_portal(
    *, env: Mapping[str, str], port: int, log: Path, workers: int = 4, threads: int = 4
) -> subprocess.Popen[bytes]:
    """Start the portal under gunicorn on loopback with ``env`` (APP_* settings)."""
    # 4 workers on 2 cores: requests spend much of their time waiting on PostgreSQL, and one
    # worker runs Python on one core at a time; ~130 MB each (docs/benchmarks.md, portal load).
    return spawn(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--access-logfile",
            "-",
            # The path without its query string: invitation and reset links carry their token
            # there, and a token must never reach a log.
            "--access-logformat",
            ACCESS_LOG_FORMAT,
            "portal:create_app()",
        ],
        env={**os.environ, **env},
        log=log,
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 90) -> None:
    """Wait until ``url`` answers 200, failing fast if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become healthy in {timeout_s:.0f}s")


def stop(process: subprocess.Popen[bytes], *, grace_s: float = 20) -> None:
    """Stop a process group started here: SIGTERM, then SIGKILL whatever is left after ``grace_s``.

    The whole group, not only its leader: a leader may exit before its children (a worker's
    flow runs, gunicorn's workers), and they must not outlive the stop.
    """
    deadline = time.monotonic() + grace_s
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _wait_group(process.pid, deadline)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    # SIGKILL is delivered asynchronously: stopped means gone, not only signalled.
    _wait_group(process.pid, time.monotonic() + 5)


def _wait_group(group: int, deadline: float) -> None:
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def spawn(argv: list[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group with its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Own process group: stop() reaches the flow-run processes a worker starts, too.
        return subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
