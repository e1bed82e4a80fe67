"""The watchdog: paid orders whose run ended without finishing them are restarted or escalated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.models import Notification
from core.models import OutboxMessage
from core.models import Provision
from core.models import Role
from core.models import User
from flows.watchdog import watchdog
from tasks import stalled_orders
from tests.factories import make_paid_provision
from tests.portal import prefect_support

pytestmark = pytest.mark.prefect
PROVISION = "provision/on-demand"


@pytest.fixture
def stack(pipeline: Any, portal_prefect: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The pipeline's settings and sandbox, the stand-in deployments, no stall delay."""
    monkeypatch.setattr(stalled_orders, "STALL_AFTER", timedelta(0))
    pipeline.api = portal_prefect
    return pipeline


def _paid(session: Session, email: str, **fields: Any) -> Provision:
    provision = make_paid_provision(session, email=email, domains=[f"{email.split('@')[0]}x.com"])
    provision.paid_at = utcnow() - timedelta(minutes=10)
    for name, value in fields.items():
        setattr(provision, name, value)
    session.commit()
    return provision


def _fresh(session: Session, provision_id: int) -> Provision:
    session.expire_all()
    row = session.get(Provision, provision_id)
    assert row is not None
    return row


def test_a_paid_order_whose_run_failed_silently_is_restarted_then_escalated(
    stack: Any, session: Session
) -> None:
    """Issue 13: a paid order whose run ended without finishing it sat in provisioning forever."""
    session.add(User(email="admin@school.test", password_hash="x", role=Role.ADMIN.value))
    provision = _paid(session, "silent@student.test")
    run_id = prefect_support.new_run(stack.api, PROVISION, {"provision_id": provision.id})
    prefect_support.fail_run(stack.api, run_id)
    provision.current_flow_run_id = run_id
    session.commit()

    for attempt in range(stalled_orders.MAX_RESTARTS):
        result = watchdog()
        assert result["restarted"] == {f"provision:{provision.id}": "retried"}, attempt
        run = prefect_support.read_run(stack.api, run_id)
        assert run.state.name == "AwaitingRetry"  # the same run, resumed from its caches
        assert watchdog()["restarted"] == {}  # scheduled again: alive, left alone
        prefect_support.fail_run(stack.api, run_id)  # ... and it fails silently again

    result = watchdog()
    assert result["restarted"] == {f"provision:{provision.id}": "escalated"}
    fresh = _fresh(session, provision.id)
    assert fresh.status == "failed" and "instructor" in (fresh.status_reason or "")
    told = {n.recipient for n in session.scalars(select(Notification))}
    assert told == {"silent@student.test", "admin@school.test"}
    assert watchdog()["restarted"] == {}  # a named reason: nothing more to do


def test_a_paid_order_with_no_run_gets_a_new_one_and_unpaid_orders_are_left_alone(
    stack: Any, session: Session
) -> None:
    lost = _paid(session, "lost@student.test")
    pending = _paid(session, "pending@student.test", status="pending_payment", paid_at=None)
    before = prefect_support.run_ids(stack.api, PROVISION)
    result = watchdog()
    assert result["restarted"] == {f"provision:{lost.id}": "new_run"}
    row = session.scalars(
        select(OutboxMessage).where(OutboxMessage.key == f"restart:provision:{lost.id}:1")
    ).one()
    assert row.sent_at is not None
    assert prefect_support.run_ids(stack.api, PROVISION) - before == {row.result}
    assert _fresh(session, lost.id).current_flow_run_id == row.result
    assert _fresh(session, pending.id).current_flow_run_id is None


def test_outbox_rows_the_portal_did_not_send_are_sent_after_30_s(
    stack: Any, session: Session
) -> None:
    old = _paid(session, "old@student.test")
    new = _paid(session, "new@student.test")
    for provision, age in ((old, 40), (new, 0)):
        outbox.enqueue(
            session,
            key=f"checkout:cs_watchdog_{provision.id}",
            deployment=PROVISION,
            parameters={"provision_id": provision.id},
        )
        session.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.key == f"checkout:cs_watchdog_{provision.id}")
            .values(created_at=utcnow() - timedelta(seconds=age))
        )
    session.commit()
    result = watchdog()
    assert list(result["sent"]) == [f"checkout:cs_watchdog_{old.id}"]
    # The young row is the portal's to send, and its order is not stalled: a start is coming.
    assert f"provision:{new.id}" not in result["restarted"]
    run = prefect_support.read_run(stack.api, result["sent"][f"checkout:cs_watchdog_{old.id}"])
    assert run.idempotency_key == f"checkout:cs_watchdog_{old.id}"


@pytest.mark.usefixtures("stack")
def test_dunning_cancels_an_order_unpaid_past_the_grace_period(session: Session) -> None:
    """Issue 13: unpaid/paused subscriptions stayed past_due forever, vendors kept billing."""
    late = _paid(
        session,
        "late@student.test",
        status="past_due",
        activated_at=utcnow(),
        past_due_since=utcnow() - timedelta(days=8),
    )
    recent = _paid(
        session,
        "recent@student.test",
        status="past_due",
        activated_at=utcnow(),
        past_due_since=utcnow() - timedelta(days=1),
    )
    result = watchdog()
    assert result["dunning_cancelled"] == [late.id]
    fresh = _fresh(session, late.id)
    assert fresh.status == "cancelled" and "grace period" in (fresh.status_reason or "")
    release = session.scalars(
        select(OutboxMessage).where(OutboxMessage.key == f"cancel:{late.id}:1")
    ).one()
    assert release.sent_at is not None  # the release run was started
    assert [n.recipient for n in session.scalars(select(Notification))] == ["late@student.test"]
    assert _fresh(session, recent.id).status == "past_due"


def test_orphaned_purchase_attempts_of_a_cancelled_order_are_settled_by_the_watchdog(
    pipeline: Any,
    fast_limits: None,  # noqa: ARG001 - no pacing: this test is about settling
) -> None:
    """A killed run's unresolved attempts are wallet reservations nobody else would release."""
    from core.models import PurchaseAttempt
    from tasks import purchase
    from tasks import runtime

    session = pipeline.session
    provision_id = pipeline.paid_provision("orphan@student.test")
    names = sorted(d.name for d in session.get(Provision, provision_id).domains)
    workspace = runtime.zapmail().create_workspace(
        "ws-orphan", pipeline.settings.zapmail_billing_details
    )
    session.get(Provision, provision_id).zapmail_workspace_id = workspace.id
    session.commit()
    purchase._reserve(provision_id, runtime.zapmail(), dict.fromkeys(names, 1299))
    runtime.zapmail().for_workspace(workspace.id).buy_domains(names)  # the run died here
    session.expire_all()
    for attempt in session.scalars(select(PurchaseAttempt)):
        attempt.started_at = utcnow() - timedelta(minutes=10)
    session.get(Provision, provision_id).status = "cancelled"
    session.commit()

    result = watchdog()

    assert result["purchases_settled"] == {str(provision_id): dict.fromkeys(names, "bought")}
    session.expire_all()
    assert (
        session.scalars(select(PurchaseAttempt).where(PurchaseAttempt.resolution.is_(None))).all()
        == []
    )
    charged = [e["item"] for e in pipeline.sandbox.ledger(kind="domain_purchase")]
    assert sorted(charged) == names  # settling bought nothing
