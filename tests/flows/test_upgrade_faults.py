"""Faults at every upgrade step: the upgrade completes by itself or after one retry, paying once.

An active Starter provision upgrades to Growth while: each kind of vendor fault is injected at
every vendor endpoint the upgrade calls at once, then at the purchase alone; a listing fails
while each wait polls it; a 5xx outage outlasts each mutating step's retries; every app DB
connection is terminated in the middle of each mutating step; the Prefect server restarts in the
middle of each mutating step. Every cell must end with the provision active on Growth, each new
domain charged once and each new mailbox created once (the old ones never again), and the
portal's view must be true at every sample: the account upgrading while the run goes on, active
on its old tier with the failing step named (and a notice) while the upgrade is failed. Outcomes
go to test-artifacts/fault-matrix.jsonl. `make test` runs a slice; RELIABILITY_LONG=1 all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import State
from sqlalchemy import create_engine
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core.models import Notification
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.models import Upgrade
from core.pipeline import UPGRADE_STEPS
from core.pipeline import upgrade_step_key
from flows.upgrade import upgrade
from tasks.policies import RETRIES
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_db_drop import ConnectionKiller
from tests.flows.test_provision_faults import KINDS
from tests.flows.test_provision_faults import PURCHASE_KINDS
from tests.flows.test_provision_faults import log_outcome
from tests.flows.test_provision_prefect_restart import own_prefect_server
from tests.flows.test_upgrade import assert_upgraded_once
from tests.flows.test_upgrade import paid_upgrade
from tests.flows.test_upgrade import provisioned
from tests.flows.test_upgrade import upgrade_steps
from tests.support.pollers import BackgroundPoller

pytestmark = pytest.mark.prefect
LONG = bool(os.environ.get("RELIABILITY_LONG"))

# Every vendor endpoint an upgrade calls, by the step that calls it first. A fault on a listing
# is met by its first caller: GET /v2/domains by the purchase's reconcile, GET
# /v2/mailboxes/list by the mailbox step's look-before-create.
ENDPOINTS = (
    ("buy_domains", "zapmail", "GET", "/v2/wallet/balance"),
    ("buy_domains", "zapmail", "POST", "/v2/domains/buy"),
    ("buy_domains", "zapmail", "GET", "/v2/domains"),
    ("buy_domains", "zapmail", "POST", "/v2/domains/update-auto-renew"),
    ("dmarc", "zapmail", "POST", "/v2/domains/dmarc"),
    ("mailboxes", "zapmail", "GET", "/v2/mailboxes/list"),
    ("mailboxes", "zapmail", "POST", "/v2/mailboxes"),
    ("connect_plusvibe", "zapmail", "GET", "/v2/exports/accounts/third-party"),
    ("connect_plusvibe", "plusvibe", "GET", "/account/list"),
    ("connect_plusvibe", "zapmail", "POST", "/v2/exports/mailboxes"),
    ("warmup", "plusvibe", "PUT", "/account/bulk-update"),
    ("warmup", "plusvibe", "PATCH", "/account/bulk-update-warmup"),
)
MUTATING = tuple(e for e in ENDPOINTS if e[2] != "GET")
# The purchase also meets answers that come after the charge (after_effect: issue 13).
VENDOR_CELLS = [("every endpoint", kind) for kind in KINDS] + [
    ("purchase", kind) for kind in PURCHASE_KINDS
]
VENDOR_SLICE = {("every endpoint", "response lost")}
VENDOR_SELECTED = [c for c in VENDOR_CELLS if LONG or c in VENDOR_SLICE]

# The listings polled by each wait: armed once the wait shows, so the wait itself meets the fault
# (injected up front, the step before it would meet it first). Lost answers of a listing change
# nothing, so the waits get the other three kinds.
WAIT_CELLS = [
    (step, vendor, path, kind)
    for step, vendor, path in (
        ("wait_domains", "zapmail", "/v2/domains"),
        ("wait_mailboxes", "zapmail", "/v2/mailboxes/list"),
        ("connect_plusvibe", "plusvibe", "/account/list"),
    )
    for kind in KINDS
    if kind != "response lost"
]

# One endpoint per mutating upgrade step, held open 1.5 s so the drop lands while it is in flight.
DB_CELLS = (
    ("buy_domains", "zapmail", "POST", "/v2/domains/buy"),
    ("dmarc", "zapmail", "POST", "/v2/domains/dmarc"),
    ("mailboxes", "zapmail", "POST", "/v2/mailboxes"),
    ("connect_plusvibe", "zapmail", "POST", "/v2/exports/mailboxes"),
    ("warmup", "plusvibe", "PATCH", "/account/bulk-update-warmup"),
)
DB_SLICE = {"mailboxes"}
# A 5xx outage outlasting a step's task retries, one endpoint per mutating step. The purchase's
# is its wallet check: a 5xx on the buy call itself is absorbed within the attempt (reconciled,
# settled and bought again), so it never outlasts the retries.
OUTAGE_CELLS = (("buy_domains", "zapmail", "GET", "/v2/wallet/balance"), *DB_CELLS[1:])
# The slice runs one cell of each family (every family is exercised in `make test`).
OUTAGE_SELECTED = [c for c in OUTAGE_CELLS if LONG or c[0] == "dmarc"]
WAIT_SELECTED = [c for c in WAIT_CELLS if LONG or c[::3] == ("connect_plusvibe", "5xx")]
RESTART_SELECTED = [c for c in DB_CELLS if LONG or c[0] == "dmarc"]
DB_SELECTED = [c for c in DB_CELLS if LONG or c[0] in DB_SLICE]

# What the portal may show at any instant: (provision status, tier, upgrade status).
TRUTHFUL = {
    ("upgrading", "starter", "provisioning"),  # running
    ("active", "starter", "failed"),  # stopped: the account keeps working on its old tier
    ("active", "growth", "completed"),
}


class StatusWatcher(BackgroundPoller):
    """Samples what the portal reads about the upgrade every 0.1 s while a run goes on."""

    def __init__(self, db_url: str, provision_id: int, upgrade_id: int) -> None:
        # pre_ping: the watcher's own connection is dropped too in the DB-drop cells.
        super().__init__(create_engine(db_url, pool_pre_ping=True, pool_size=1))
        self.query = (
            select(Provision.status, Tier.slug, Upgrade.status)
            .join(Tier, Tier.id == Provision.tier_id)
            .join(Upgrade, Upgrade.provision_id == Provision.id)
            .where(Provision.id == provision_id, Upgrade.id == upgrade_id)
        )
        self.seen: set[tuple[str, str, str]] = set()

    def poll(self) -> bool:
        """Record one sample (a dropped connection: sample again next time on a fresh one)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(self.query).one()
        except SQLAlchemyError:
            return False
        self.seen.add(tuple(row))
        return False

    def untruthful(self) -> set[tuple[str, str, str]]:
        """The combinations seen that would have misled the student."""
        return self.seen - TRUTHFUL


class FaultAtWait(BackgroundPoller):
    """Injects a fault on a listing once the upgrade's ``step`` shows as waiting."""

    every_s = 0.05

    def __init__(self, pipeline: Pipeline, step: str, fault: dict[str, Any]) -> None:
        super().__init__(create_engine(pipeline.settings.database_url))
        self.sandbox, self.step, self.fault = pipeline.sandbox, step, fault
        self.injected: dict[str, Any] | None = None

    def poll(self) -> bool:
        """Inject the fault once the step waits."""
        query = select(ProvisioningStep.status).where(ProvisioningStep.step_key == self.step)
        with self.engine.connect() as conn:
            if conn.scalar(query) != "waiting":
                return False
        self.injected = self.sandbox.add_fault(**self.fault)
        return True


def assert_failure_told(pipeline: Pipeline, provision_id: int, upgrade_id: int) -> str:
    """A failed upgrade: account active on its old tier, failing step named, student told."""
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    failed = session.get(Upgrade, upgrade_id)
    assert (row.status, row.tier.slug, row.waiting_for) == ("active", "starter", None)
    assert failed.status == "failed", "a failed run must show the upgrade as failed"
    step = (failed.status_reason or "").split(":", 1)[0]
    steps = upgrade_steps(pipeline, provision_id, upgrade_id)
    # Named in the mirror too, unless the run stopped before its first step.
    assert steps.get(step) == "failed" or step == "start", (failed.status_reason, steps)
    notices = session.scalars(
        select(Notification).where(Notification.key.startswith(f"upgrade-failed:{upgrade_id}:"))
    ).all()
    assert notices and all(n.recipient == row.user.email for n in notices)
    # The steps before the failing one stay done, the ones after it untouched.
    if step in UPGRADE_STEPS:
        before = UPGRADE_STEPS[: UPGRADE_STEPS.index(step)]
        assert all(steps[k] == "completed" for k in before), steps
        assert steps["finish"] == "pending", steps
    return step


def upgrade_with_one_retry(
    pipeline: Pipeline,
    provision_id: int,
    upgrade_id: int,
    before_retry: Callable[[], None] = lambda: None,
) -> tuple[str, str | None]:
    """Run the upgrade; if it fails, check what the student sees, then retry once.

    ``before_retry`` runs after the first run either way (e.g. waiting for the server to be back).
    Returns how it recovered and the step the failed run named (None when it did not fail).
    """
    with StatusWatcher(pipeline.settings.database_url, provision_id, upgrade_id) as watcher:
        first: State[Any] = upgrade(upgrade_id, return_state=True)
        before_retry()
        failed_step = None
        if first.is_completed():
            outcome = "automatically"
        else:
            failed_step = assert_failure_told(pipeline, provision_id, upgrade_id)
            second: State[Any] = upgrade(upgrade_id, return_state=True)
            if not second.is_completed():
                log_outcome("lost")
            assert second.is_completed(), f"still failing after one retry: {second.message}"
            outcome = "after one retry"
    assert watcher.seen, "the watcher never read the upgrade's status"
    assert not watcher.untruthful(), f"the portal showed {watcher.untruthful()}"
    log_outcome(outcome)
    return outcome, failed_step


def upgrading(pipeline: Pipeline, who: str) -> tuple[int, int, list[str]]:
    """An active Starter provision with a paid upgrade to Growth; ids and the old domains."""
    # The address names the student's domains: letters and digits only.
    who = "".join(ch for ch in who.lower() if ch.isalnum())
    provision_id = provisioned(pipeline, email=f"{who}@student.test")
    pipeline.session.expire_all()
    old = sorted(d.name for d in pipeline.session.get(Provision, provision_id).domains)
    return provision_id, paid_upgrade(pipeline, provision_id), old


def assert_upgraded_paying_once(
    pipeline: Pipeline, provision_id: int, upgrade_id: int, old: list[str]
) -> None:
    """Active on Growth, every domain charged once and every mailbox created once, old ones kept."""
    assert_upgraded_once(pipeline, provision_id, upgrade_id)
    session = pipeline.session
    assert (
        sorted(d.name for d in session.get(Provision, provision_id).domains if not d.upgrade_id)
        == old
    )


def cell_id(cell: tuple[str, ...]) -> str:
    """A test id for a cell (no spaces)."""
    return "-".join(part.replace(" ", "_") for part in cell)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", VENDOR_SELECTED, ids=[cell_id(c) for c in VENDOR_SELECTED])
def test_upgrade_vendor_fault_pays_once(pipeline: Pipeline, cell: tuple[str, str]) -> None:
    where, kind = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"up{cell_id(cell)}")
    pipeline.settings.vendor_timeout_s = 1.0
    if where == "purchase":
        endpoints = [e for e in ENDPOINTS if e[3] == "/v2/domains/buy"]
    else:
        endpoints = MUTATING if kind == "response lost" else ENDPOINTS
    faults = [
        pipeline.sandbox.add_fault(vendor=vendor, method=method, path=path, **PURCHASE_KINDS[kind])
        for _, vendor, method, path in endpoints
    ]

    upgrade_with_one_retry(pipeline, provision_id, upgrade_id)

    hits = {f["id"]: f["hits"] for f in pipeline.sandbox.control("GET", "/faults").json()["faults"]}
    missed = [e[3] for e, f in zip(endpoints, faults, strict=True) if hits[f["id"]] < 1]
    assert not missed, f"faults the upgrade never met: {missed}"
    assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", OUTAGE_SELECTED, ids=[c[0] for c in OUTAGE_SELECTED])
def test_upgrade_vendor_outage_beyond_retries_fails_truthfully_then_one_retry_pays_once(
    pipeline: Pipeline, cell: tuple[str, str, str, str]
) -> None:
    # A 5xx on every attempt of the step: the run must stop, say so, and resume on the retry.
    step, vendor, method, path = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"upout{step}")
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="status", status=503, times=RETRIES + 1
    )

    outcome, failed_step = upgrade_with_one_retry(pipeline, provision_id, upgrade_id)

    assert (outcome, failed_step) == ("after one retry", step)
    assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", WAIT_SELECTED, ids=[cell_id(c[::3]) for c in WAIT_SELECTED])
def test_upgrade_vendor_fault_during_a_wait_pays_once(
    pipeline: Pipeline, cell: tuple[str, str, str, str]
) -> None:
    step, vendor, path, kind = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"upwait{cell_id(cell[::3])}")
    pipeline.settings.vendor_timeout_s = 1.0
    # Lifecycles of 3 s: every wait outlasts its first check, so it shows as waiting.
    pipeline.sandbox.configure(domain_activation_s=3, mailbox_activation_s=3, export_delay_s=3)
    fault = {"vendor": vendor, "method": "GET", "path": path, **KINDS[kind]}

    with FaultAtWait(pipeline, upgrade_step_key(upgrade_id, step), fault) as armer:
        upgrade_with_one_retry(pipeline, provision_id, upgrade_id)

    assert armer.injected, f"the upgrade's {step} never showed as waiting"
    hits = {f["id"]: f["hits"] for f in pipeline.sandbox.control("GET", "/faults").json()["faults"]}
    assert hits[armer.injected["id"]] >= 1, f"the upgrade's {step} never met the fault"
    assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)


@pytest.mark.postgres_only
@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", DB_SELECTED, ids=[c[0] for c in DB_SELECTED])
def test_upgrade_app_db_dropped_mid_step_pays_once(
    pipeline: Pipeline, db_url: str, cell: tuple[str, str, str, str]
) -> None:
    step, vendor, method, path = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"updb{step}")
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="latency", latency_ms=1500, times=1
    )

    with ConnectionKiller(db_url, upgrade_step_key(upgrade_id, step)) as killer:
        upgrade_with_one_retry(pipeline, provision_id, upgrade_id)

    assert killer.killed >= 1, f"no connection was open during the upgrade's {step}"
    assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)


@pytest.mark.postgres_only
@pytest.mark.usefixtures("fast_limits")
@pytest.mark.parametrize("cell", RESTART_SELECTED, ids=[c[0] for c in RESTART_SELECTED])
def test_upgrade_prefect_server_restarted_mid_step_pays_once(
    pipeline: Pipeline, db_url: str, tmp_path: Path, cell: tuple[str, str, str, str]
) -> None:
    # No fast_retries: the production delays (2, 4, 8, 16 s) are what ride out a restart.
    step, vendor, method, path = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"uprestart{step}")
    home = tmp_path / "prefect-home"
    home.mkdir()
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="latency", latency_ms=1500, times=1
    )
    key = upgrade_step_key(upgrade_id, step)
    with own_prefect_server(db_url, home) as server:
        done = threading.Event()
        restarter = threading.Thread(
            target=server.restart_when_running, args=(db_url, key, done), daemon=True
        )
        restarter.start()
        try:
            upgrade_with_one_retry(
                pipeline, provision_id, upgrade_id, lambda: restarter.join(timeout=120)
            )
        finally:
            done.set()
            restarter.join(timeout=120)

    assert server.restarts == 1, f"the server was not restarted during the upgrade's {step}"
    assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)
