"""The Prefect server restarts in the middle of a step: the run resumes and pays once.

A run of its own Prefect server (same database, same port before and after, as a restarted
service would be) is stopped while a step's vendor call is held open by the sandbox, and started
again a few seconds later. The run must reach active by itself or after one rerun, with each
domain charged once and each mailbox created once. `make test` runs the purchase; `make chaos`
every step.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.settings import temporary_settings
from sqlalchemy import select
from sqlalchemy.engine import make_url

from core.models import ProvisioningStep
from deployments.local import free_port
from deployments.local import start_prefect_server
from deployments.local import stop
from deployments.local import wait_healthy
from tasks.limits import ensure_limits
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_db_drop import CELLS
from tests.flows.test_provision_faults import assert_paid_once_and_active
from tests.flows.test_provision_faults import run_with_one_retry
from tests.support.databases import ensure_postgres_database
from tests.support.prefect_server import drain_prefect_workers
from tests.support.prefect_server import forget_prefect_services

# The production retry delays (2, 4, 8, 16 s): they are what rides out a restart.
pytestmark = [pytest.mark.prefect, pytest.mark.postgres_only]
SELECTED = [c for c in CELLS if os.environ.get("RELIABILITY_LONG") or c[0] == "buy_domains"]
DOWN_S = 3.0


class RestartableServer:
    """A `prefect server` that can be stopped and started again on the same port and database."""

    def __init__(self, database_url: str, home: Path) -> None:
        self.database_url, self.home, self.port = database_url, home, free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.process = None
        self.restarts = 0

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.process = start_prefect_server(
            database_url=self.database_url,
            home=self.home,
            port=self.port,
            log=self.home / "server.log",
        )
        wait_healthy(f"{self.api}/health", self.process)

    def stop(self) -> None:
        """Stop the server (SIGTERM, as a service manager does)."""
        if self.process is not None:
            stop(self.process)
            self.process = None

    def restart_when_running(self, db_url: str, step: str, stop_event: threading.Event) -> None:
        """Once ``step`` is in flight, stop the server for DOWN_S seconds and start it again."""
        from sqlalchemy import create_engine

        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                while not stop_event.wait(0.05):
                    conn.rollback()
                    status = conn.scalar(
                        select(ProvisioningStep.status).where(ProvisioningStep.step_key == step)
                    )
                    if status == "running":
                        break
                else:
                    return
            time.sleep(0.3)
            self.stop()
            time.sleep(DOWN_S)
            self.start()
            self.restarts += 1
        finally:
            engine.dispose()


@contextmanager
def own_prefect_server(pg_url: str, home: Path) -> Iterator[RestartableServer]:
    """A Prefect server of this test's own, on a database of its own."""
    url = make_url(pg_url)
    url = url.set(database=f"{url.database}_restart").render_as_string(hide_password=False)
    ensure_postgres_database(url)
    server = RestartableServer(url, home)
    server.start()
    try:
        switch_prefect_server()
        with temporary_settings({PREFECT_API_URL: server.api}):
            ensure_limits()
            try:
                yield server
            finally:
                switch_prefect_server()
    finally:
        server.stop()


def switch_prefect_server() -> None:
    """Flush logs and events to the server in use, then unbind Prefect's cached clients from it."""
    drain_prefect_workers()
    forget_prefect_services()


@pytest.mark.parametrize("cell", SELECTED, ids=[c[0] for c in SELECTED])
def test_prefect_server_restarted_mid_step_loses_nothing(
    pipeline: Pipeline, db_url: str, tmp_path: Path, cell: tuple[str, str, str, str]
) -> None:
    step, vendor, method, path = cell
    home = tmp_path / "prefect-home"
    home.mkdir()
    provision_id = pipeline.paid_provision(email=f"restart-{step.replace('_', '')}@student.test")
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="latency", latency_ms=1500, times=1
    )
    with own_prefect_server(db_url, home) as server:
        done = threading.Event()
        restarter = threading.Thread(
            target=server.restart_when_running, args=(db_url, step, done), daemon=True
        )
        restarter.start()

        def server_back() -> None:
            restarter.join(timeout=120)

        try:
            outcome, _ = run_with_one_retry(pipeline, provision_id, server_back)
        finally:
            done.set()
            restarter.join(timeout=120)

    assert server.restarts == 1, f"the server was not restarted during {step}"
    assert outcome in ("automatically", "after one retry")
    assert_paid_once_and_active(pipeline, provision_id)
