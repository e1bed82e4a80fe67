"""The upgrade run's process is SIGKILLed in the middle of every mutating step: one retry finishes.

An active Starter provision upgrades to Growth on a real process worker. While one upgrade
step's vendor call is held by the sandbox after the vendor acted (a ``drop_response`` fault:
the domains are bought, the mailboxes created, the export started...), the run's own process
(never the worker) is killed with SIGKILL. The worker reports the run crashed and its crash hook
marks the upgrade failed at that step, the account active on its old tier; an operator presses
Retry (the Prefect UI's button, or the admin page, which does the same) and the upgrade must
complete with each new domain charged once and each new mailbox created once, the old ones
never again. The portal's view, sampled all along, must be true at every sample, and the dead
run must show as failed within seconds. `make test` runs the purchase; `make chaos` every step.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from sqlalchemy import select

from core.models import Domain
from core.models import Upgrade
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_faults import log_outcome
from tests.flows.test_provision_sigkill import HOLD_S
from tests.flows.test_provision_sigkill import NOTICE_S
from tests.flows.test_provision_sigkill import kill_run_process
from tests.flows.test_provision_sigkill import retry_like_an_operator
from tests.flows.test_provision_sigkill import until_in_flight
from tests.flows.test_provision_sigkill import worker  # noqa: F401 - the same worker fixture
from tests.flows.test_provision_worker import settled_state
from tests.flows.test_upgrade import FINAL
from tests.flows.test_upgrade import drive
from tests.flows.test_upgrade import new_addresses
from tests.flows.test_upgrade import upgrade_steps
from tests.flows.test_upgrade_faults import DB_CELLS
from tests.flows.test_upgrade_faults import StatusWatcher
from tests.flows.test_upgrade_faults import assert_failure_told
from tests.flows.test_upgrade_faults import assert_upgraded_paying_once
from tests.flows.test_upgrade_faults import upgrading
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect
log = logging.getLogger(__name__)

# One endpoint per mutating upgrade step (the DB-drop cells'); `make test` kills the purchase.
SLICE = {"buy_domains"}
SELECTED = [c for c in DB_CELLS if os.environ.get("RELIABILITY_LONG") or c[0] in SLICE]
FAILED_SHOWN = ("active", "starter", "failed")


def zapmail_state(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.sandbox.control("GET", "/zapmail/state").json()


def plusvibe_state(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.sandbox.control("GET", "/plusvibe/state").json()


def ledger_items(pipeline: Pipeline, kind: str) -> set[str]:
    return {e["item"] for e in pipeline.sandbox.ledger(kind=kind)}


def exported(pipeline: Pipeline, addresses: set[str]) -> bool:
    """Whether an export of any of ``addresses`` was started at Zapmail."""
    state = zapmail_state(pipeline)
    ids = {m["id"] for m in state["mailboxes"] if m["email"].lower() in addresses}
    return any(ids & set(e["mailboxIds"]) for e in state["exports"])


# Whether the cell's operation took effect for the upgrade's new domains or mailboxes, read from
# the vendor's own state (the provision's old ones were bought, set up and exported before).
ACTED: dict[str, Callable[[Pipeline, set[str], set[str]], bool]] = {
    "buy_domains": lambda p, names, _a: bool(names & ledger_items(p, "domain_purchase")),
    "dmarc": lambda p, names, _a: any(
        d["domain"] in names and d["dmarcEmail"] for d in zapmail_state(p)["domains"]
    ),
    "mailboxes": lambda p, _n, addresses: bool(addresses & ledger_items(p, "mailbox_created")),
    "connect_plusvibe": lambda p, _n, addresses: exported(p, addresses),
    "warmup": lambda p, _n, addresses: any(
        a["email"].lower() in addresses and a["warmup_status"] == "ACTIVE"
        for a in plusvibe_state(p)["accounts"]
    ),
}


def assert_new_mailboxes_once(pipeline: Pipeline, addresses: set[str]) -> None:
    """Each new mailbox exists once at Zapmail and once in PlusVibe (no export repeated)."""
    boxes = Counter(m["email"].lower() for m in zapmail_state(pipeline)["mailboxes"])
    accounts = Counter(a["email"].lower() for a in plusvibe_state(pipeline)["accounts"])
    found = {a: (boxes[a], accounts[a]) for a in addresses}
    assert found == dict.fromkeys(addresses, (1, 1)), f"(zapmail, plusvibe) per mailbox: {found}"


def upgrade_status(pipeline: Pipeline, upgrade_id: int) -> str:
    pipeline.session.expire_all()
    return pipeline.session.get(Upgrade, upgrade_id).status  # type: ignore[union-attr]


@pytest.mark.postgres_only
@pytest.mark.parametrize("cell", SELECTED, ids=[c[0] for c in SELECTED])
def test_upgrade_run_process_killed_mid_step_recovers_after_one_retry(
    pipeline: Pipeline,
    worker: Any,  # noqa: F811 - the imported fixture
    fast_limits: None,  # noqa: ARG001 - after the worker: its deployments.setup resets the limits
    cell: tuple[str, str, str, str],
) -> None:
    step, vendor, method, path = cell
    provision_id, upgrade_id, old = upgrading(pipeline, f"upkill{step}")
    names = set(
        pipeline.session.scalars(select(Domain.name).where(Domain.upgrade_id == upgrade_id))
    )
    addresses = set(new_addresses(pipeline, upgrade_id))
    assert len(names) == 2 and len(addresses) == 4
    fault = pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="drop_response", hold_s=HOLD_S, times=1
    )

    with StatusWatcher(pipeline.settings.database_url, provision_id, upgrade_id) as watcher:
        run_id = run_deployment(
            "upgrade/on-demand",
            parameters={"upgrade_id": upgrade_id},
            timeout=0,
            idempotency_key=f"upgrade:{upgrade_id}",
        ).id
        until_in_flight(pipeline, run_id, fault["id"])
        wait_for(
            lambda: ACTED[step](pipeline, names, addresses),
            timeout_s=10,
            what=f"the upgrade's {step} to take effect at the vendor",
        )
        killed_at = kill_run_process(pipeline, worker.pid, run_id, fault["id"])
        pipeline.session.expire_all()
        in_flight = upgrade_steps(pipeline, provision_id, upgrade_id).get(step)
        assert in_flight == "running", f"{step} was {in_flight} when the process died"

        # The worker sees its child die and reports the run crashed; its crash hook mirrors it.
        wait_for(
            lambda: upgrade_status(pipeline, upgrade_id) == "failed",
            timeout_s=NOTICE_S,
            what="the dead run to show as failed",
            every_s=0.1,
        )
        lag = time.monotonic() - killed_at
        final = wait_for(
            lambda: (t := settled_state(run_id, quiet_s=3.0)) in FINAL and t,
            timeout_s=90,
            what="the crash to be reported",
        )
        outcome = "automatically" if final == StateType.COMPLETED else "after one retry"
        if outcome != "automatically":
            assert final == StateType.CRASHED, final
            # Active on its old tier, the killed step named, the student told.
            assert assert_failure_told(pipeline, provision_id, upgrade_id) == step
            # The admin page's Retry reschedules the run the upgrade names: this one.
            assert pipeline.session.get(Upgrade, upgrade_id).flow_run_id == str(run_id)
            retry_like_an_operator(run_id)
        state = drive(run_id)
    try:
        assert state.is_completed(), state.message
        assert_upgraded_paying_once(pipeline, provision_id, upgrade_id, old)
        assert_new_mailboxes_once(pipeline, addresses)
    except AssertionError:
        log_outcome("lost")
        raise
    log_outcome(outcome)

    assert watcher.seen, "the watcher never read the upgrade's status"
    assert not watcher.untruthful(), f"the portal showed {watcher.untruthful()}"
    assert FAILED_SHOWN in watcher.seen, "the crash was never shown to the student"
    log.info("upgrade %s: %s; the dead run showed as failed after %.1fs", step, outcome, lag)
