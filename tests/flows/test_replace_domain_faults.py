"""Faults at every replacement step: the replacement completes by itself or after one retry, paying once.

An active Starter provision (with a website, so forwarding is set) replaces one domain while:
each kind of vendor fault is injected at every vendor endpoint that sets up the new domain at
once, then at the purchase alone (answers after the charge included), then at every endpoint the
retirement of the old domain calls (armed while the warmup step's last call is in flight, so the
retirement meets them, not the set-up); and a 5xx outage outlasts the retirement's retries. Every
cell must end with the replacement completed, the new domain charged exactly once, each new
mailbox created once and the old domain retired, and the portal's view must be true at every
sample: the account active throughout, the replacement provisioning, failed (with the step named
and the student told) or completed. Outcomes go to test-artifacts/fault-matrix.jsonl.
`make test` runs a slice; RELIABILITY_LONG=1 all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.schemas.objects import State
from sqlalchemy import create_engine
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core.models import DomainReplacement
from core.models import Notification
from core.models import Provision
from core.pipeline import REPLACEMENT_STEPS
from flows.replace_domain import replace_domain
from tasks.policies import RETRIES
from tasks.replacement import finish_replacement
from tasks.replacement import start_replacement
from tasks.retire_domain import pause_old_warmup
from tasks.retire_domain import retire_domain
from tasks.retire_domain import schedule_old_removal
from tasks.retire_domain import stop_old_renewal
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_faults import KINDS
from tests.flows.test_provision_faults import PURCHASE_KINDS
from tests.flows.test_provision_faults import log_outcome
from tests.flows.test_replace_domain import WEBSITE
from tests.flows.test_replace_domain import assert_replaced_once
from tests.flows.test_replace_domain import replacement_steps
from tests.flows.test_replace_domain import requested
from tests.flows.test_upgrade import provisioned
from tests.flows.test_upgrade_faults import ENDPOINTS as UPGRADE_ENDPOINTS
from tests.flows.test_upgrade_faults import cell_id
from tests.support.pollers import BackgroundPoller

pytestmark = pytest.mark.prefect
LONG = bool(os.environ.get("RELIABILITY_LONG"))

# Setting up the new domain calls what an upgrade calls, plus forwarding (the student has a site).
SETUP = (*UPGRADE_ENDPOINTS, ("forwarding", "zapmail", "POST", "/v2/domains/forwarding"))
# Retiring the old domain: a listing before each change, each change only where still on.
RETIRE = (
    ("retire_domain", "plusvibe", "GET", "/account/list"),
    ("retire_domain", "plusvibe", "PATCH", "/account/bulk-update-warmup"),
    ("retire_domain", "zapmail", "GET", "/v2/mailboxes/list"),
    ("retire_domain", "zapmail", "PUT", "/v2/mailboxes/scheduled-removal"),
    ("retire_domain", "zapmail", "GET", "/v2/domains"),
    ("retire_domain", "zapmail", "POST", "/v2/domains/update-auto-renew"),
)
CELLS = (
    [("setup", kind) for kind in KINDS]
    + [("purchase", kind) for kind in PURCHASE_KINDS]
    + [("retire", kind) for kind in KINDS]
)
SLICE = {("retire", "response lost")}
SELECTED = [c for c in CELLS if LONG or c in SLICE]
# A 5xx outage outlasting the step's task retries: the run stops, says so, the retry finishes.
OUTAGES = (RETIRE[3], ("dmarc", "zapmail", "POST", "/v2/domains/dmarc"))
OUTAGE_SELECTED = [c for c in OUTAGES if LONG or c[0] == "retire_domain"]

RETIRE_TASKS = (retire_domain, pause_old_warmup, schedule_old_removal, stop_old_renewal)
# What the portal may show at any instant: (provision status, replacement status).
TRUTHFUL = {("active", "provisioning"), ("active", "failed"), ("active", "completed")}


@pytest.fixture
def fast_retries(fast_retries: None, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ARG001
    """The pipeline tasks' short backoff, and the replacement's own tasks' too."""
    own = (start_replacement, finish_replacement, *RETIRE_TASKS)
    for task in own:
        monkeypatch.setattr(task, "retry_delay_seconds", [0.2] * max(task.retries, 1))


class StatusWatcher(BackgroundPoller):
    """Samples what the portal reads about the replacement every 0.1 s while a run goes on."""

    def __init__(self, db_url: str, replacement_id: int) -> None:
        super().__init__(create_engine(db_url, pool_pre_ping=True, pool_size=1))
        self.query = (
            select(Provision.status, DomainReplacement.status)
            .join(DomainReplacement, DomainReplacement.provision_id == Provision.id)
            .where(DomainReplacement.id == replacement_id)
        )
        self.seen: set[tuple[str, str]] = set()

    def poll(self) -> bool:
        """Record one sample (a dropped connection: sample again next time)."""
        try:
            with self.engine.connect() as conn:
                self.seen.add(tuple(conn.execute(self.query).one()))
        except SQLAlchemyError:
            pass
        return False


class FaultsAtRetire(BackgroundPoller):
    """Arms the retirement's faults while the warmup step's last call (held briefly) is in flight.

    The warmup switch-on is the last vendor call before the retirement, and the retirement's
    endpoints (listings, warmup, auto-renew) are also called while setting up: armed up front,
    the set-up would meet them first.
    """

    every_s = 0.05

    def __init__(self, pipeline: Pipeline, faults: list[dict[str, Any]]) -> None:
        super().__init__(create_engine(pipeline.settings.database_url))
        self.sandbox, self.faults = pipeline.sandbox, faults
        self.hold = self.sandbox.add_fault(
            vendor="plusvibe",
            method="PATCH",
            path="/account/bulk-update-warmup",
            kind="latency",
            latency_ms=700,
            times=1,
        )
        self.armed: list[dict[str, Any]] = []

    def poll(self) -> bool:
        """Arm the faults once the held call has arrived."""
        if hits(self.sandbox)[self.hold["id"]] < 1:
            return False
        self.armed = [self.sandbox.add_fault(**fault) for fault in self.faults]
        return True


def hits(sandbox: Any) -> dict[int, int]:
    """Fault id -> how many requests met it."""
    return {f["id"]: f["hits"] for f in sandbox.control("GET", "/faults").json()["faults"]}


def assert_failure_told(pipeline: Pipeline, provision_id: int, replacement_id: int) -> str:
    """A failed replacement: the account active, the failing step named, the student told."""
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    failed = session.get(DomainReplacement, replacement_id)
    assert (row.status, row.waiting_for) == ("active", None)
    assert failed.status == "failed", "a failed run must show the replacement as failed"
    step = (failed.status_reason or "").split(":", 1)[0]
    steps = replacement_steps(pipeline, provision_id, replacement_id)
    assert steps.get(step) == "failed" or step == "start", (failed.status_reason, steps)
    notices = session.scalars(
        select(Notification).where(
            Notification.key.startswith(f"replacement-failed:{replacement_id}:")
        )
    ).all()
    assert notices and all(n.recipient == row.user.email for n in notices)
    if step in REPLACEMENT_STEPS:
        before = REPLACEMENT_STEPS[: REPLACEMENT_STEPS.index(step)]
        assert all(steps[k] == "completed" for k in before), steps
        assert steps["finish"] == "pending", steps
    return step


def replace_with_one_retry(
    pipeline: Pipeline,
    provision_id: int,
    replacement_id: int,
    before_retry: Callable[[], None] = lambda: None,
) -> tuple[str, str | None]:
    """Run the replacement; if it fails, check what the student sees, then retry once."""
    with StatusWatcher(pipeline.settings.database_url, replacement_id) as watcher:
        first: State[Any] = replace_domain(replacement_id, return_state=True)
        before_retry()
        failed_step = None
        if first.is_completed():
            outcome = "automatically"
        else:
            failed_step = assert_failure_told(pipeline, provision_id, replacement_id)
            second: State[Any] = replace_domain(replacement_id, return_state=True)
            if not second.is_completed():
                log_outcome("lost")
            assert second.is_completed(), f"still failing after one retry: {second.message}"
            outcome = "after one retry"
    assert watcher.seen, "the watcher never read the replacement's status"
    assert watcher.seen <= TRUTHFUL, f"the portal showed {watcher.seen - TRUTHFUL}"
    log_outcome(outcome)
    return outcome, failed_step


def replacing(pipeline: Pipeline, who: str) -> tuple[int, int]:
    """An active Starter provision with a website and an included replacement; the ids."""
    who = "".join(ch for ch in who.lower() if ch.isalnum())
    provision_id = provisioned(pipeline, email=f"{who}@student.test")
    session = pipeline.session
    session.expire_all()
    session.get(Provision, provision_id).forward_to = WEBSITE
    session.commit()
    return provision_id, requested(pipeline, provision_id)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", SELECTED, ids=[cell_id(c) for c in SELECTED])
def test_replacement_vendor_fault_pays_once(pipeline: Pipeline, cell: tuple[str, str]) -> None:
    where, kind = cell
    provision_id, replacement_id = replacing(pipeline, f"rp{cell_id(cell)}")
    pipeline.settings.vendor_timeout_s = 1.0
    spec = PURCHASE_KINDS[kind]
    lost_only_mutating = kind == "response lost"
    if where == "retire":
        endpoints = [e for e in RETIRE if not (lost_only_mutating and e[2] == "GET")]
        faults = [
            {"vendor": vendor, "method": method, "path": path, **spec}
            for _, vendor, method, path in endpoints
        ]
        with FaultsAtRetire(pipeline, faults) as armer:
            replace_with_one_retry(pipeline, provision_id, replacement_id)
        assert len(armer.armed) == len(faults), "the retirement's faults were never armed"
        armed = armer.armed
    else:
        if where == "purchase":
            endpoints = [e for e in SETUP if e[3] == "/v2/domains/buy"]
        else:
            endpoints = [e for e in SETUP if not (lost_only_mutating and e[2] == "GET")]
        armed = [
            pipeline.sandbox.add_fault(vendor=vendor, method=method, path=path, **spec)
            for _, vendor, method, path in endpoints
        ]
        replace_with_one_retry(pipeline, provision_id, replacement_id)

    met = hits(pipeline.sandbox)
    missed = [e[3] for e, f in zip(endpoints, armed, strict=True) if met[f["id"]] < 1]
    assert not missed, f"faults the replacement never met: {missed}"
    assert_replaced_once(pipeline, provision_id, replacement_id)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
@pytest.mark.parametrize("cell", OUTAGE_SELECTED, ids=[c[0] for c in OUTAGE_SELECTED])
def test_replacement_outage_beyond_retries_fails_truthfully_then_one_retry_pays_once(
    pipeline: Pipeline, cell: tuple[str, str, str, str]
) -> None:
    step, vendor, method, path = cell
    provision_id, replacement_id = replacing(pipeline, f"rpout{step}")
    pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="status", status=503, times=RETRIES + 1
    )

    outcome, failed_step = replace_with_one_retry(pipeline, provision_id, replacement_id)

    assert (outcome, failed_step) == ("after one retry", step)
    assert_replaced_once(pipeline, provision_id, replacement_id)
