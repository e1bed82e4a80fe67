"""A real Prefect process worker for tests, running the deployments from prefect.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.objects import FlowRun

from deployments.local import PROJECT_ROOT
from deployments.local import start_worker
from deployments.local import stop


def app_env(settings: Any) -> dict[str, str]:
    """The APP_* environment that makes a flow process use ``settings``."""
    return {
        "APP_ENV": settings.env,
        "APP_DATABASE_URL": settings.database_url,
        "APP_SANDBOX_URL": settings.sandbox_url,
        "APP_INSTANCE_DIR": str(settings.instance_dir),
        "APP_WAIT_POLL_S": str(settings.wait_poll_s),
        "APP_WAIT_INLINE_S": str(settings.wait_inline_s),
        "APP_PURCHASE_SETTLE_S": str(settings.purchase_settle_s),
        "APP_VENDOR_TIMEOUT_S": str(settings.vendor_timeout_s),
        "APP_DATA_KEYS": settings.data_keys.get_secret_value(),
    }


@contextmanager
def running_worker(
    api_url: str, settings: Any, home: Path, results: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Deploy prefect.yaml to ``api_url`` and run a process worker until the block ends."""
    env = {
        **app_env(settings),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(results),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "APP_DIR": str(PROJECT_ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "deployments.setup"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        check=True,
    )
    worker = start_worker(env=env, log=home / "worker.log", limit=4)
    worker.log_path = home / "worker.log"  # type: ignore[attr-defined]
    try:
        yield worker
    finally:
        stop(worker)


def read_run(run_id: UUID) -> FlowRun:
    """Read a flow run from the API."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(child) for child in result.stdout.split()]


def _is_prefect_worker(pid: int) -> bool:
    try:
        return b"worker\0start" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def flow_run_processes(worker_pid: int) -> list[int]:
    """Pids of the flow-run processes the worker has started and that are still alive.

    ``worker_pid`` is what start_worker returned: the launcher, whose child is the Prefect
    worker; the worker's children are the runs' launch_run processes (each stands in for its
    forked engine child, which dies with it).
    """
    children = _children(worker_pid)
    workers = [pid for pid in children if _is_prefect_worker(pid)]
    if not workers:
        return children
    return [pid for worker in workers for pid in _children(worker)]


def wait_for(predicate: Any, *, timeout_s: float, what: str, every_s: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
