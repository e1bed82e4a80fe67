"""The app DB drops every connection in the middle of a step: nothing is lost or paid twice.

While a step's vendor call is held open by the sandbox, every other connection to the app DB is
terminated on the server (what a PostgreSQL restart or fail-over does to clients), including
the purchase lock's. The run must reach active by itself or after one retry, with each domain
charged once and each mailbox created once. `make test` runs the purchase and one later step;
`make chaos` runs every step.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy import select
from sqlalchemy import text

from core.models import ProvisioningStep
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_faults import assert_paid_once_and_active
from tests.flows.test_provision_faults import run_with_one_retry
from tests.support.pollers import BackgroundPoller

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.postgres_only,
    pytest.mark.usefixtures("fast_retries", "fast_limits"),
]

# One endpoint per step, held open 1.5 s so the drop lands while the step is in flight.
CELLS = (
    ("zapmail_workspace", "zapmail", "POST", "/v2/workspaces"),
    ("buy_domains", "zapmail", "POST", "/v2/domains/buy"),
    ("dmarc", "zapmail", "POST", "/v2/domains/dmarc"),
    ("mailboxes", "zapmail", "POST", "/v2/mailboxes"),
    ("plusvibe_workspace", "plusvibe", "POST", "/client"),
    ("connect_plusvibe", "zapmail", "POST", "/v2/exports/mailboxes"),
    ("warmup", "plusvibe", "PATCH", "/account/bulk-update-warmup"),
    ("heyreach_list", "heyreach", "POST", "/list/CreateEmptyList"),
)
SLICE = {"buy_domains", "mailboxes"}
SELECTED = [c for c in CELLS if os.environ.get("RELIABILITY_LONG") or c[0] in SLICE]


class ConnectionKiller(BackgroundPoller):
    """Terminates every other backend of the app DB once ``step`` is running."""

    every_s = 0.05

    def __init__(self, db_url: str, step: str) -> None:
        super().__init__(create_engine(db_url, isolation_level="AUTOCOMMIT"))
        self.step = step
        self.killed = 0

    def poll(self) -> bool:
        """Once the step runs, wait until it is inside its held vendor call, then kill."""
        with self.engine.connect() as conn:
            status = conn.scalar(
                select(ProvisioningStep.status).where(ProvisioningStep.step_key == self.step)
            )
            if status != "running":
                return False
            # Inside the held vendor call: the step holds connections (and the lock).
            self.stop.wait(0.5)
            self.killed = conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return True


@pytest.mark.parametrize("cell", SELECTED, ids=[c[0] for c in SELECTED])
def test_app_db_connections_dropped_mid_step_lose_nothing(
    pipeline: Pipeline, db_url: str, cell: tuple[str, str, str, str]
) -> None:
    step, vendor, method, path = cell
    provision_id = pipeline.paid_provision(email=f"dbdrop-{step.replace('_', '')}@student.test")
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="latency", latency_ms=1500, times=1
    )

    with ConnectionKiller(db_url, step) as killer:
        outcome, _ = run_with_one_retry(pipeline, provision_id)

    assert killer.killed >= 1, f"no connection was open during {step}"
    assert outcome in ("automatically", "after one retry")
    assert_paid_once_and_active(pipeline, provision_id)
