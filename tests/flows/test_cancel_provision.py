"""The cancellation flow against the sandbox: warmup off, mailboxes removed at renewal, domains
not renewed, nothing bought, the student's data and sign-in kept; reruns and retries harmless."""

from __future__ import annotations

from collections import Counter
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from core.db import utcnow
from core.models import AuditLog
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from flows.cancel_provision import cancel_provision
from flows.provision import provision
from portal import create_app
from tasks import cancellation
from tasks import runtime
from tasks.cancellation import CANCEL_STEPS
from tests.factories import PASSWORD
from tests.factories import make_user
from tests.flows.conftest import Pipeline
from tests.portal.conftest import portal_settings
from tests.portal.helpers import signed_in

pytestmark = pytest.mark.prefect

CANCEL_TASKS = (
    cancellation.stop_live_runs,
    cancellation.pause_warmup,
    cancellation.schedule_mailbox_removal,
    cancellation.stop_domain_renewal,
)


def zapmail_state(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.sandbox.control("GET", "/zapmail/state").json()


def plusvibe_accounts(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.sandbox.control("GET", "/plusvibe/state").json()["accounts"]


def charges(pipeline: Pipeline) -> Counter[str]:
    """Every ledger entry kind except the removals and renewal changes cancellation records."""
    return Counter(
        entry["kind"]
        for entry in pipeline.sandbox.ledger()
        if entry["kind"] not in ("mailbox_removal_scheduled", "domain_auto_renew_set")
    )


def outbox(pipeline: Pipeline) -> list[Any]:
    folder = Path(pipeline.settings.instance_dir) / "outbox"
    return [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def provisioned_and_cancelled(pipeline: Pipeline, email: str = "tim@student.test") -> int:
    """A student whose order was provisioned (domains renewing), then cancelled by Stripe."""
    provision_id = pipeline.paid_provision(email)
    assert provision(provision_id)["status"] == "active"
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None
    # What a paying student has: domains that renew (the operator's choice at Zapmail).
    client = runtime.zapmail().for_workspace(row.zapmail_workspace_id or "")
    client.set_auto_renew([d.zapmail_domain_id for d in row.domains], True)
    assert all(d["autoRenew"] for d in zapmail_state(pipeline)["domains"])
    assert all(a["warmup_status"] == "ACTIVE" for a in plusvibe_accounts(pipeline))
    # What the Stripe webhook does before starting the flow.
    row.status = "cancelled"
    row.cancelled_at = utcnow()
    row.user.password_hash = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
    session.commit()
    return provision_id


def assert_everything_off(pipeline: Pipeline, provision_id: int) -> None:
    state = zapmail_state(pipeline)
    assert state["domains"] and all(d["autoRenew"] is False for d in state["domains"])
    assert state["mailboxes"] and all(m["scheduledRemoval"] for m in state["mailboxes"])
    accounts = plusvibe_accounts(pipeline)
    assert accounts and all(a["warmup_status"] == "INACTIVE" for a in accounts)
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None and row.status == "cancelled"
    assert all(d.auto_renew is False for d in row.domains)
    boxes = session.scalars(
        select(Mailbox).where(Mailbox.domain_id.in_([d.id for d in row.domains]))
    )
    assert all(b.removal_scheduled_at and not b.warmup_enabled for b in boxes)
    # The student's data stays: the list, the ids, the mailbox rows.
    assert row.heyreach_list_id is not None and row.zapmail_workspace_id
    steps = {
        s.step_key: s.status
        for s in session.scalars(
            select(ProvisioningStep).where(ProvisioningStep.provision_id == provision_id)
        )
    }
    assert {steps[k] for k in CANCEL_STEPS} == {"completed"}


def test_cancellation_switches_everything_off_retries_safely_and_keeps_the_data(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cancel_task in CANCEL_TASKS:
        monkeypatch.setattr(cancel_task, "retry_delay_seconds", [0.1] * cancel_task.retries)
    provision_id = provisioned_and_cancelled(pipeline)
    admin = make_user(pipeline.session, "ops@bootcamp.test", role=Role.ADMIN)
    pipeline.session.commit()
    before = charges(pipeline)
    # Zapmail's mailbox endpoint answers 500 until the outage ends: the run fails mid-way.
    pipeline.sandbox.add_fault(
        vendor="zapmail",
        method="PUT",
        path="/v2/mailboxes/scheduled-removal",
        kind="status",
        status=500,
        times=None,
    )

    failed = cancel_provision(provision_id, return_state=True)

    assert failed.is_failed()
    # Warmup went off before the outage; the mailboxes still await scheduling.
    assert all(a["warmup_status"] == "INACTIVE" for a in plusvibe_accounts(pipeline))
    assert not any(m["scheduledRemoval"] for m in zapmail_state(pipeline)["mailboxes"])
    pipeline.session.expire_all()
    assert pipeline.session.get(Provision, provision_id).status == "cancelled"
    (alert,) = [m for m in outbox(pipeline) if m["To"] == admin.email]
    assert f"Cancelling provision {provision_id}" in alert["Subject"]

    # The outage ends; the retry does the rest and leaves alone what is already off.
    pipeline.sandbox.clear_faults()
    result = cancel_provision(provision_id)

    assert result["status"] == "cancelled"
    assert result["warmup_paused"] == 0
    assert result["mailboxes_scheduled_for_removal"] == 6
    assert result["domains_renewal_stopped"] == 3
    assert_everything_off(pipeline, provision_id)
    assert charges(pipeline) == before  # nothing bought, nothing created
    session = pipeline.session
    audit = session.scalars(
        select(AuditLog).where(
            AuditLog.target_id == provision_id, AuditLog.target_type == "provision"
        )
    ).all()
    assert [a.action for a in audit] == ["provision_resources_released"]
    # The student was told when setup finished and now once more, through the demo outbox
    # (no SMTP host configured).
    student_mail = sorted(m["Subject"] for m in outbox(pipeline) if m["To"] == "tim@student.test")
    assert student_mail == [
        "Your outbound infrastructure is ready",
        "Your outbound subscription has ended",
    ]
    # Operators find the run's summary in the Prefect UI.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"cancel-provision-{provision_id}"])
            )
        )
    assert artifacts and "auto-renew switched off | 3" in str(artifacts[-1].data)

    # The student can still sign in and read the dashboard.
    settings = portal_settings(
        pipeline.settings.database_url, pipeline.sandbox.url, pipeline.settings.instance_dir
    )
    app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
    try:
        web = signed_in(app, "tim@student.test")
        page = web.get("/dashboard")
        assert page.status_code == 200
        assert session.get(Provision, provision_id).domains[0].name in page.get_data(as_text=True)
    finally:
        app.extensions["portal_db"].dispose()

    # A rerun (duplicate webhook, UI retry) changes nothing and emails nobody again.
    mails = len(outbox(pipeline))
    again = cancel_provision(provision_id)
    assert (
        again["warmup_paused"],
        again["mailboxes_scheduled_for_removal"],
        again["domains_renewal_stopped"],
    ) == (0, 0, 0)
    assert charges(pipeline) == before
    assert len(outbox(pipeline)) == mails
    assert_everything_off(pipeline, provision_id)


def test_a_provision_that_is_not_cancelled_is_left_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancellation, "CONFIRM_WAIT_S", 0.5)
    provision_id = pipeline.paid_provision()
    pipeline.session.get(Provision, provision_id).status = "active"
    pipeline.session.commit()

    state = cancel_provision(provision_id, return_state=True)

    assert state.is_failed()
    assert "active, not cancelled" in str(state.message)
    pipeline.session.expire_all()
    assert pipeline.session.get(Provision, provision_id).status == "active"
    steps = pipeline.session.scalars(
        select(ProvisioningStep.step_key).where(ProvisioningStep.provision_id == provision_id)
    ).all()
    assert not steps  # it stopped before touching anything


def test_a_release_that_failed_halfway_is_redone_by_a_new_run_from_the_vendors_state(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.cancellation import release_again
    from core.cancellation import request_cancellation
    from core.models import OutboxMessage

    for cancel_task in CANCEL_TASKS:
        monkeypatch.setattr(cancel_task, "retry_delay_seconds", [0.1] * cancel_task.retries)
    provision_id = pipeline.paid_provision("halfway@student.test")
    assert provision(provision_id)["status"] == "active"
    session = pipeline.session
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None
    runtime.zapmail().for_workspace(row.zapmail_workspace_id or "").set_auto_renew(
        [d.zapmail_domain_id for d in row.domains], True
    )
    # Our rows claim half the mailboxes are already scheduled for removal; Zapmail says not
    # (a recorded answer whose effect never happened). Only Zapmail's word may count.
    boxes = session.scalars(select(Mailbox).order_by(Mailbox.id)).all()
    for box in boxes[::2]:
        box.removal_scheduled_at = utcnow()
    assert request_cancellation(session, provision_id, reason="subscription ended")
    session.commit()
    # Zapmail's auto-renew endpoint is down: the release run fails halfway.
    pipeline.sandbox.add_fault(
        vendor="zapmail",
        method="POST",
        path="/v2/domains/update-auto-renew",
        kind="status",
        status=500,
        times=None,
    )

    failed = cancel_provision(provision_id, return_state=True)

    assert failed.is_failed()
    assert any(d["autoRenew"] for d in zapmail_state(pipeline)["domains"])

    # The outage ends; asking again queues a new run under a new key (not the failed one's).
    pipeline.sandbox.clear_faults()
    assert release_again(session, provision_id)
    session.commit()
    keys = sorted(
        session.scalars(
            select(OutboxMessage.key).where(OutboxMessage.key.like(f"cancel:{provision_id}:%"))
        )
    )
    assert keys == [f"cancel:{provision_id}:1", f"cancel:{provision_id}:2"]

    result = cancel_provision(provision_id)  # the run the outbox sender starts for key 2

    assert result["status"] == "cancelled"
    assert result["domains_renewal_stopped"] == 3
    assert_everything_off(pipeline, provision_id)
