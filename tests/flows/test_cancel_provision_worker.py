"""Cancellation through the real deployment on a process worker, with a provisioning run still
live (suspended, waiting for its domains): the run is stopped first, nothing more is bought."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from prefect.deployments import run_deployment

from core.db import utcnow
from core.models import Provision
from flows.sweep_waiting import sweep_waiting
from tasks import runtime
from tests.flows.conftest import Pipeline
from tests.support.worker import read_run
from tests.support.worker import wait_for

pytestmark = pytest.mark.prefect


def final_state(run_id: UUID, timeout_s: float = 180) -> Any:
    return wait_for(
        lambda: (s := read_run(run_id).state) is not None and s.is_final() and s,
        timeout_s=timeout_s,
        what=f"run {run_id} to finish",
    )


@pytest.mark.usefixtures("worker")
def test_cancelling_stops_the_live_provisioning_run_and_buys_nothing_more(
    pipeline: Pipeline,
) -> None:
    pipeline.sandbox.configure(domain_activation_s=600)
    provision_id = pipeline.paid_provision()
    provisioning = run_deployment(
        "provision/on-demand", parameters={"provision_id": provision_id}, timeout=0
    ).id
    wait_for(lambda: read_run(provisioning).state.is_paused(), timeout_s=120, what="suspend")
    bought = Counter(e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase"))
    assert len(bought) == 3

    # What the Stripe webhook does: mark the order cancelled, start the cancellation.
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    # Domains that renew, as a paying student's do.
    zapmail = runtime.zapmail().for_workspace(row.zapmail_workspace_id)
    zapmail.set_auto_renew([d.id for d in zapmail.iter_domains()], True)
    row.status, row.cancelled_at = "cancelled", utcnow()
    session.commit()
    cancelling = run_deployment(
        "cancel-provision/on-demand",
        parameters={"provision_id": provision_id},
        timeout=0,
        idempotency_key=f"cancel:{provision_id}:test",
    )

    state = final_state(cancelling.id)

    assert state.is_completed(), state.message
    run = read_run(cancelling.id)
    assert run.name == f"cancel-{provision_id}-tim@student.test"
    assert "cancellation" in run.tags
    result = state.result()
    assert result["stopped_runs"] == [str(provisioning)]
    assert result["domains_renewal_stopped"] == 3
    assert read_run(provisioning).state.is_cancelled()
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row.status == "cancelled" and row.waiting_for is None
    # The domains become ready, but the stopped run is never resumed: nothing else is created.
    pipeline.sandbox.advance(600)
    assert sweep_waiting()["resumed"] == []
    assert Counter(e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase")) == bought
    assert pipeline.sandbox.ledger(kind="mailbox_created") == []
    domains = pipeline.sandbox.control("GET", "/zapmail/state").json()["domains"]
    assert len(domains) == 3 and not any(d["autoRenew"] for d in domains)
