"""The upgrade flow end to end: real Prefect server, real PostgreSQL, sandbox over HTTP.

A student provisioned on Starter (3 domains) upgrades to Growth (5): exactly the 2 new domains
are bought, their 4 mailboxes join the same PlusVibe workspace with warmup on, and the tier
changes. Reruns, faults and retries never pay twice; unpaid or unknown upgrades touch nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.states import Scheduled
from sqlalchemy import select

from core.crypto import SecretBox
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Notification
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.models import Upgrade
from core.pipeline import UPGRADE_STEPS
from core.pipeline import upgrade_step_key
from flows.provision import provision
from flows.sweep_waiting import sweep_waiting
from flows.upgrade import upgrade
from tasks.policies import RETRIES
from tasks.upgrade import mark_upgrade_failed
from tests.factories import make_paid_provision
from tests.flows.conftest import Pipeline
from tests.support.worker import read_run
from tests.support.worker import wait_for

# Vendor pacing is lifted where flows run (fast_limits): the limits are tested elsewhere.
pytestmark = pytest.mark.prefect
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
EMAIL = "ada@student.test"
PATTERNS = ("ada", "ada.lovelace")


def provisioned(pipeline: Pipeline, email: str = EMAIL) -> int:
    """A student whose Starter provisioning has run to active; return the provision id."""
    provision_id = pipeline.paid_provision(email=email, first_name="Ada", last_name="Lovelace")
    assert provision(provision_id)["status"] == "active"
    return provision_id


def paid_upgrade(pipeline: Pipeline, provision_id: int, *, paid: bool = True) -> int:
    """An upgrade to Growth with two available new domains, paid as the portal records it."""
    session = pipeline.session
    stem = f"grow{provision_id}x"
    names = pipeline.available_names(2, stem) if paid else [f"{stem}{i}.com" for i in range(2)]
    row = session.get(Provision, provision_id)
    growth = session.scalar(select(Tier).where(Tier.slug == "growth"))
    now = utcnow() if paid else None
    upgrade_row = Upgrade(
        provision_id=provision_id,
        from_tier_id=row.tier_id,
        to_tier_id=growth.id,
        status="provisioning" if paid else "pending_payment",
        fee_paid_at=now,
        proration_paid_at=now,
        paid_at=now,
    )
    session.add(upgrade_row)
    session.flush()
    for name in names:
        session.add(Domain(provision_id=provision_id, upgrade_id=upgrade_row.id, name=name))
    if paid:
        row.status = "upgrading"  # what portal.fulfilment.maybe_start_upgrade does
    session.commit()
    return upgrade_row.id


def charges(pipeline: Pipeline) -> Counter[str]:
    return Counter(e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase"))


def created_mailboxes(pipeline: Pipeline) -> Counter[str]:
    return Counter(e["item"] for e in pipeline.sandbox.ledger(kind="mailbox_created"))


def upgrade_steps(pipeline: Pipeline, provision_id: int, upgrade_id: int) -> dict[str, str]:
    prefix = upgrade_step_key(upgrade_id, "")
    rows = pipeline.session.scalars(
        select(ProvisioningStep).where(
            ProvisioningStep.provision_id == provision_id,
            ProvisioningStep.step_key.startswith(prefix),
        )
    )
    return {row.step_key.removeprefix(prefix): row.status for row in rows}


def new_addresses(pipeline: Pipeline, upgrade_id: int) -> list[str]:
    names = pipeline.session.scalars(select(Domain.name).where(Domain.upgrade_id == upgrade_id))
    return sorted(f"{user}@{name}" for name in names for user in PATTERNS)


def assert_upgraded_once(pipeline: Pipeline, provision_id: int, upgrade_id: int) -> None:
    """Every domain charged once, every mailbox created once, the tier and statuses moved on."""
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert (row.status, row.tier.slug, row.waiting_for) == ("active", "growth", None)
    assert session.get(Upgrade, upgrade_id).status == "completed"
    assert charges(pipeline) == Counter(d.name for d in row.domains)
    assert len(row.domains) == 5
    addresses = [m.address for d in row.domains for m in d.mailboxes]
    assert created_mailboxes(pipeline) == Counter(addresses) and len(addresses) == 10
    assert upgrade_steps(pipeline, provision_id, upgrade_id) == dict.fromkeys(
        UPGRADE_STEPS, "completed"
    )


@pytest.mark.usefixtures("fast_limits")
def test_upgrade_buys_only_the_new_domains_and_a_rerun_spends_nothing(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline)
    session = pipeline.session
    # The session keeps objects after commit: read what the provisioning run wrote.
    session.expire_all()
    before = session.get(Provision, provision_id)
    old_domains = sorted(d.name for d in before.domains)
    workspace = before.plusvibe_workspace_id
    upgrade_id = paid_upgrade(pipeline, provision_id)

    state = upgrade(upgrade_id, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    added = new_addresses(pipeline, upgrade_id)
    assert result["status"] == "completed" and len(result["domains"]) == 2
    assert_upgraded_once(pipeline, provision_id, upgrade_id)
    # The old domains were not charged again; the new ones are active with DMARC.
    assert all(charges(pipeline)[name] == 1 for name in old_domains)
    new = session.scalars(select(Domain).where(Domain.upgrade_id == upgrade_id)).all()
    assert all(d.status == "ACTIVE" and d.dmarc_email for d in new)
    # The 4 new mailboxes use the student's two patterns and sit in the same PlusVibe workspace.
    row = session.get(Provision, provision_id)
    assert row.plusvibe_workspace_id == workspace
    boxes = session.scalars(select(Mailbox).where(Mailbox.address.in_(added))).all()
    assert len(boxes) == 4
    assert all(b.status == "ACTIVE" and b.plusvibe_account_id and b.warmup_enabled for b in boxes)
    settings = pipeline.settings
    accounts = httpx.get(
        f"{settings.plusvibe_base_url}/account/list",
        params={"workspace_id": workspace, "limit": 100},
        headers={"x-api-key": settings.plusvibe_api_key.get_secret_value()},
        timeout=10,
    ).json()["accounts"]
    assert len(accounts) == 10 and set(added) <= {a["email"] for a in accounts}
    assert {a["warmup_status"] for a in accounts} == {"ACTIVE"}
    # The student is told once; operators find the run by name and tags, and read the summary.
    notices = session.scalars(
        select(Notification.key).where(Notification.key.startswith("upgrade-"))
    ).all()
    assert notices == [f"upgrade-complete:{upgrade_id}"]
    run = read_run(state.state_details.flow_run_id)
    assert run.name == f"upgrade-{upgrade_id}-{EMAIL}"
    assert {"upgrade", f"upgrade-{upgrade_id}", f"provision-{provision_id}"} <= set(run.tags)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"upgrade-{upgrade_id}"]))
        )
    assert all(address in artifact.data for address in added)
    password = SecretBox.from_settings(settings).open(row.plusvibe_client_password_enc)
    assert password.get_secret_value() not in artifact.data

    ledger_before = len(pipeline.sandbox.ledger())
    rerun = upgrade(upgrade_id, return_state=True)

    assert rerun.is_completed() and rerun.result()["status"] == "completed"
    assert len(pipeline.sandbox.ledger()) == ledger_before
    assert_upgraded_once(pipeline, provision_id, upgrade_id)


@pytest.mark.usefixtures("fast_retries", "fast_limits")
def test_a_lost_buy_answer_and_failing_mailbox_creation_then_a_retry_pay_once(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline, email="grace@student.test")
    upgrade_id = paid_upgrade(pipeline, provision_id)
    new_domains = sorted(
        pipeline.session.scalars(select(Domain.name).where(Domain.upgrade_id == upgrade_id))
    )
    # The purchase goes through but its answer is lost; mailbox creation fails every attempt.
    pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path="/v2/domains/buy", kind="drop_response", hold_s=1.0
    )
    pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path="/v2/mailboxes", kind="status", times=RETRIES + 1
    )

    first = upgrade(upgrade_id, return_state=True)

    assert first.is_failed()
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    failed = session.get(Upgrade, upgrade_id)
    # The upgrade shows the failing step; the account is usable again on its old tier.
    assert failed.status == "failed" and failed.status_reason.startswith("mailboxes:")
    assert (row.status, row.tier.slug, row.waiting_for) == ("active", "starter", None)
    steps = upgrade_steps(pipeline, provision_id, upgrade_id)
    assert steps["buy_domains"] == steps["dmarc"] == "completed"
    assert steps["mailboxes"] == "failed" and steps["finish"] == "pending"
    notice = session.scalars(
        select(Notification).where(Notification.key.startswith(f"upgrade-failed:{upgrade_id}:"))
    ).one()
    assert notice.recipient == "grace@student.test"
    assert all(charges(pipeline)[name] == 1 for name in new_domains)

    retried = upgrade(upgrade_id, return_state=True)

    assert retried.is_completed(), retried.message
    assert_upgraded_once(pipeline, provision_id, upgrade_id)


def active_provision(pipeline: Pipeline, email: str) -> int:
    """An active Starter provision built directly (refusals never reach a vendor)."""
    row = make_paid_provision(
        pipeline.session, email=email, domains=[f"{email[:4]}old{i}.com" for i in range(3)]
    )
    row.status, row.zapmail_workspace_id, row.plusvibe_workspace_id = "active", "ws-1", "pv-1"
    pipeline.session.commit()
    return row.id


@pytest.mark.parametrize("case", ["unknown", "unpaid", "cancelled account"])
def test_an_unpaid_or_unknown_upgrade_is_refused_and_touches_nothing(
    pipeline: Pipeline, case: str
) -> None:
    provision_id = active_provision(pipeline, f"{case.replace(' ', '')}@student.test")
    upgrade_id = paid_upgrade(pipeline, provision_id, paid=case != "unpaid")
    session = pipeline.session
    if case == "unknown":
        upgrade_id += 1000
    if case == "cancelled account":
        session.get(Provision, provision_id).status = "cancelled"
        session.commit()
    status_before = session.get(Provision, provision_id).status
    calls_before = pipeline.sandbox.stats()["total"]

    state = upgrade(upgrade_id, return_state=True)

    assert state.is_failed()
    reason = {"unknown": "does not exist", "unpaid": "not paid", "cancelled account": "cancelled"}
    assert reason[case] in state.message
    assert pipeline.sandbox.stats()["total"] == calls_before
    assert pipeline.sandbox.ledger() == []
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert (row.status, row.tier.slug, row.current_flow_run_id) == (status_before, "starter", None)
    assert session.scalars(select(ProvisioningStep)).all() == []
    assert session.scalars(select(Notification)).all() == []
    if case != "unknown":
        left = session.get(Upgrade, upgrade_id)
        assert left.status == ("pending_payment" if case == "unpaid" else "provisioning")


@flow(name="other-setup-run")
def other_setup_run() -> None:
    """Stands for a live run that holds the provision (never executed)."""


def test_an_upgrade_does_not_take_over_a_provision_another_run_holds(pipeline: Pipeline) -> None:
    provision_id = active_provision(pipeline, "busy@student.test")
    upgrade_id = paid_upgrade(pipeline, provision_id)
    with get_client(sync_client=True) as client:
        live = client.create_flow_run(other_setup_run)  # scheduled: not final, so it is live
    session = pipeline.session
    session.get(Provision, provision_id).current_flow_run_id = str(live.id)
    session.commit()

    state = upgrade(upgrade_id, return_state=True)

    assert state.is_failed() and "held by live run" in state.message
    assert pipeline.sandbox.ledger() == []
    session.expire_all()
    row = session.get(Provision, provision_id)
    # The holder's provision is left alone; the upgrade waits, failed, for a retry.
    assert (row.status, row.current_flow_run_id) == ("upgrading", str(live.id))
    left = session.get(Upgrade, upgrade_id)
    assert left.status == "failed" and left.status_reason.startswith("start:")
    assert left.flow_run_id == str(state.state_details.flow_run_id)
    assert session.scalars(select(Notification)).all() == []


def test_a_run_that_died_before_claiming_still_frees_the_account(pipeline: Pipeline) -> None:
    # What the reconciler reports for a run cancelled or crashed before its first task.
    provision_id = active_provision(pipeline, "died@student.test")
    upgrade_id = paid_upgrade(pipeline, provision_id)  # the portal set the account upgrading
    dead_run = "00000000-0000-0000-0000-000000000001"

    mark_upgrade_failed(upgrade_id, None, f"run {dead_run} crashed", dead_run)

    session = pipeline.session
    session.expire_all()
    assert session.get(Provision, provision_id).status == "active"
    left = session.get(Upgrade, upgrade_id)
    assert (left.status, left.flow_run_id) == ("failed", dead_run)
    assert left.status_reason.startswith("start:")
    (notice,) = session.scalars(select(Notification)).all()
    assert notice.key.startswith(f"upgrade-failed:{upgrade_id}:") and "keep working" in notice.body


def drive(run_id: UUID, *, timeout_s: float = 180) -> Any:
    """Sweep (as the scheduled sweeper would) until the run is final; return its state."""

    def final() -> Any:
        state = read_run(run_id).state
        if state and state.type in FINAL:
            return state
        if state and state.is_paused():
            sweep_waiting()
        return None

    return wait_for(final, timeout_s=timeout_s, what="the upgrade run to end", every_s=0.5)


@pytest.mark.usefixtures("worker", "fast_limits")
def test_deployed_upgrade_suspends_is_resumed_by_the_sweeper_and_retries_from_the_ui(
    pipeline: Pipeline,
) -> None:
    provision_id = provisioned(pipeline, email="linus@student.test")
    upgrade_id = paid_upgrade(pipeline, provision_id)
    # Only the domain wait outlasts the inline grace (each suspension costs a new process).
    pipeline.sandbox.configure(domain_activation_s=600, mailbox_activation_s=0, export_delay_s=0)
    # A refused request (not retried) makes the first attempt fail at mailbox creation.
    pipeline.sandbox.add_fault(
        vendor="zapmail", method="POST", path="/v2/mailboxes", kind="status", status=400, times=1
    )
    run_id = run_deployment(
        "upgrade/on-demand",
        parameters={"upgrade_id": upgrade_id},
        timeout=0,
        idempotency_key=f"upgrade:{upgrade_id}",
    ).id

    wait_for(lambda: read_run(run_id).state.is_paused(), timeout_s=120, what="suspend")
    pipeline.session.expire_all()
    row = pipeline.session.get(Provision, provision_id)
    assert (row.waiting_for, row.current_flow_run_id) == ("domains_active", str(run_id))
    assert sweep_waiting()["resumed"] == []  # the new domains are not active yet
    pipeline.sandbox.advance(600)
    assert sweep_waiting()["resumed"] == [provision_id]

    state = drive(run_id)

    assert state.type == StateType.FAILED

    def mirrored() -> Upgrade | None:
        # The failure hook runs in the flow process just after the run turns Failed.
        pipeline.session.expire_all()
        row = pipeline.session.get(Upgrade, upgrade_id)
        return row if row.status == "failed" else None

    assert wait_for(mirrored, timeout_s=30, what="the hook").status_reason.startswith("mailboxes:")
    assert pipeline.session.get(Provision, provision_id).status == "active"

    # What the Prefect UI's Retry button does: the same run, resumed from its first open step.
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Scheduled(name="AwaitingRetry"), force=True)
    state = drive(run_id)

    assert state.is_completed(), state.message
    assert_upgraded_once(pipeline, provision_id, upgrade_id)
    run = read_run(run_id)
    assert run.name == f"upgrade-{upgrade_id}-linus@student.test"
    assert {"upgrade", f"provision-{provision_id}"} <= set(run.tags)
