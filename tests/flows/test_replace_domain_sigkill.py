"""The replacement run's process is SIGKILLed in the middle of a mutating step: one retry finishes.

An active Starter provision replaces a domain on a real process worker. While one replacement
step's vendor call is held by the sandbox after the vendor acted (a ``drop_response`` fault: the
new domain is bought, its mailboxes created, the old mailboxes scheduled for removal...), the
run's own process (never the worker) is killed with SIGKILL. The worker reports the run crashed
and its crash hook marks the replacement failed at that step, the account still active; an
operator presses Retry and the replacement must complete with the new domain charged once, each
new mailbox created once and the old domain retired. The portal's view, sampled all along, must
be true at every sample. `make test` kills the retirement; `make chaos` every mutating step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from core.models import DomainReplacement
from core.replacements import replacement_key
from tests.flows.conftest import Pipeline
from tests.flows.test_provision_faults import log_outcome
from tests.flows.test_provision_sigkill import HOLD_S
from tests.flows.test_provision_sigkill import NOTICE_S
from tests.flows.test_provision_sigkill import kill_run_process
from tests.flows.test_provision_sigkill import retry_like_an_operator
from tests.flows.test_provision_sigkill import until_in_flight
from tests.flows.test_provision_sigkill import worker  # noqa: F401 - the same worker fixture
from tests.flows.test_provision_worker import settled_state
from tests.flows.test_replace_domain import assert_replaced_once
from tests.flows.test_replace_domain import replacement_steps
from tests.flows.test_replace_domain_faults import TRUTHFUL
from tests.flows.test_replace_domain_faults import StatusWatcher
from tests.flows.test_replace_domain_faults import assert_failure_told
from tests.flows.test_replace_domain_faults import replacing
from tests.flows.test_upgrade import FINAL
from tests.flows.test_upgrade import drive
from tests.flows.test_upgrade_faults import DB_CELLS
from tests.flows.test_upgrade_sigkill import assert_new_mailboxes_once
from tests.flows.test_upgrade_sigkill import ledger_items
from tests.flows.test_upgrade_sigkill import plusvibe_state
from tests.flows.test_upgrade_sigkill import zapmail_state
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect

# One endpoint per mutating step: the set-up's (as for upgrades) and the retirement's removal.
CELLS = (*DB_CELLS, ("retire_domain", "zapmail", "PUT", "/v2/mailboxes/scheduled-removal"))
SELECTED = [c for c in CELLS if os.environ.get("RELIABILITY_LONG") or c[0] == "retire_domain"]

# Whether the cell's operation took effect at the vendor for the replacement's new domain (or,
# for the retirement, the old one's mailboxes), read from the vendor's own state.
ACTED: dict[str, Callable[[Pipeline, str, set[str], set[str]], bool]] = {
    "buy_domains": lambda p, new, _a, _o: new in ledger_items(p, "domain_purchase"),
    "dmarc": lambda p, new, _a, _o: any(
        d["domain"] == new and d["dmarcEmail"] for d in zapmail_state(p)["domains"]
    ),
    "mailboxes": lambda p, _n, added, _o: bool(added & ledger_items(p, "mailbox_created")),
    "connect_plusvibe": lambda p, _n, added, _o: any(
        m["email"].lower() in added
        and any(m["id"] in e["mailboxIds"] for e in zapmail_state(p)["exports"])
        for m in zapmail_state(p)["mailboxes"]
    ),
    "warmup": lambda p, _n, added, _o: any(
        a["email"].lower() in added and a["warmup_status"] == "ACTIVE"
        for a in plusvibe_state(p)["accounts"]
    ),
    "retire_domain": lambda p, _n, _a, old: bool(
        old & ledger_items(p, "mailbox_removal_scheduled")
    ),
}


def replacement_status(pipeline: Pipeline, replacement_id: int) -> str:
    pipeline.session.expire_all()
    return pipeline.session.get(DomainReplacement, replacement_id).status  # type: ignore[union-attr]


@pytest.mark.postgres_only
@pytest.mark.parametrize("cell", SELECTED, ids=[c[0] for c in SELECTED])
def test_replacement_run_process_killed_mid_step_recovers_after_one_retry(
    pipeline: Pipeline,
    worker: Any,  # noqa: F811 - the imported fixture
    fast_limits: None,  # noqa: ARG001 - after the worker: its deployments.setup resets the limits
    cell: tuple[str, str, str, str],
) -> None:
    step, vendor, method, path = cell
    provision_id, replacement_id = replacing(pipeline, f"rpkill{step}")
    row = pipeline.session.get(DomainReplacement, replacement_id)
    new = row.new_domain.name
    old = {m.address for m in row.old_domain.mailboxes}
    added = {f"{a.split('@')[0]}@{new}" for a in old}
    assert len(old) == len(added) == 2
    fault = pipeline.sandbox.add_fault(
        vendor=vendor, method=method, path=path, kind="drop_response", hold_s=HOLD_S, times=1
    )

    with StatusWatcher(pipeline.settings.database_url, replacement_id) as watcher:
        run_id = run_deployment(
            "replace-domain/on-demand",
            parameters={"replacement_id": replacement_id},
            timeout=0,
            idempotency_key=replacement_key(replacement_id),
        ).id
        until_in_flight(pipeline, run_id, fault["id"])
        wait_for(
            lambda: ACTED[step](pipeline, new, added, old),
            timeout_s=10,
            what=f"the replacement's {step} to take effect at the vendor",
        )
        killed_at = kill_run_process(pipeline, worker.pid, run_id, fault["id"])
        pipeline.session.expire_all()
        in_flight = replacement_steps(pipeline, provision_id, replacement_id).get(step)
        assert in_flight == "running", f"{step} was {in_flight} when the process died"

        wait_for(
            lambda: replacement_status(pipeline, replacement_id) == "failed",
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
        assert final == StateType.CRASHED, final
        assert assert_failure_told(pipeline, provision_id, replacement_id) == step
        # The admin page's Retry reschedules the run the replacement names: this one.
        assert pipeline.session.get(DomainReplacement, replacement_id).flow_run_id == str(run_id)
        retry_like_an_operator(run_id)
        state = drive(run_id)
    try:
        assert state.is_completed(), state.message
        assert_replaced_once(pipeline, provision_id, replacement_id)
        assert_new_mailboxes_once(pipeline, added)
    except AssertionError:
        log_outcome("lost")
        raise
    log_outcome("after one retry")
    assert watcher.seen <= TRUTHFUL, f"the portal showed {watcher.seen - TRUTHFUL}"
    assert ("active", "failed") in watcher.seen, "the crash was never shown to the student"
    assert lag < NOTICE_S
