"""The watchdog and domain replacements: a paid replacement without a live run is restarted.

Like a paid upgrade: a lost start gets a new run under a new key, a run that ended without
finishing is retried in place, and after ``MAX_RESTARTS`` the replacement is failed with a named
reason and the student and admins told; the account itself stays active throughout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import DomainReplacement
from core.models import Notification
from core.models import OutboxMessage
from core.models import Provision
from core.models import Role
from core.models import User
from core.replacements import REPLACEMENT_DEPLOYMENT
from flows.replace_domain import replace_domain
from flows.watchdog import watchdog
from tasks import stalled_orders
from tests.factories import DomainFactory
from tests.factories import make_paid_provision
from tests.flows.test_watchdog import stack  # noqa: F401 - the same stand-in stack
from tests.portal import prefect_support

pytestmark = pytest.mark.prefect


@pytest.fixture
def deployed(stack: Any) -> Any:  # noqa: F811 - the imported fixture
    """The replace-domain deployment on the test server (no worker: its runs stay Scheduled)."""
    replace_domain.to_deployment(name="on-demand").apply()
    return stack


def replacing(session: Session, email: str, **fields: Any) -> DomainReplacement:
    """An active Starter order with one paid (included) replacement in provisioning."""
    stem = email.split("@")[0]
    provision = make_paid_provision(
        session, email=email, domains=[f"{stem}{i}.com" for i in range(3)]
    )
    provision.status, provision.paid_at = "active", utcnow() - timedelta(days=3)
    old = provision.domains[0]
    old.purchase_state = "purchased"
    new = DomainFactory(session=session, provision=provision, name=f"{stem}new.com")
    replacement = DomainReplacement(
        provision=provision,
        old_domain=old,
        new_domain=new,
        reason="admin",
        payment="included",
        status="provisioning",
        paid_at=utcnow() - timedelta(minutes=10),
        **fields,
    )
    session.add(replacement)
    session.commit()
    return replacement


def test_a_replacement_whose_start_was_lost_gets_a_new_run_unpaid_ones_are_left_alone(
    deployed: Any, session: Session
) -> None:
    lost = replacing(session, "lostswap@student.test")
    unpaid = replacing(session, "unpaidswap@student.test")
    unpaid.status, unpaid.paid_at, unpaid.payment = "pending_payment", None, "charged"
    session.commit()
    before = prefect_support.run_ids(deployed.api, REPLACEMENT_DEPLOYMENT)

    result = watchdog()

    assert result["restarted"] == {f"replacement:{lost.id}": "new_run"}
    row = session.scalars(
        select(OutboxMessage).where(OutboxMessage.key == f"restart:replacement:{lost.id}:1")
    ).one()
    assert row.sent_at is not None and row.payload["parameters"] == {"replacement_id": lost.id}
    assert prefect_support.run_ids(deployed.api, REPLACEMENT_DEPLOYMENT) - before == {row.result}
    # The queued run is alive (scheduled): the next pass leaves it alone.
    assert watchdog()["restarted"] == {}


def test_a_replacement_whose_run_failed_silently_is_retried_then_escalated(
    deployed: Any, session: Session
) -> None:
    session.add(User(email="admin@school.test", password_hash="x", role=Role.ADMIN.value))
    replacement = replacing(session, "silentswap@student.test")
    run_id = prefect_support.new_run(
        deployed.api, REPLACEMENT_DEPLOYMENT, {"replacement_id": replacement.id}
    )
    prefect_support.fail_run(deployed.api, run_id)
    replacement.flow_run_id = run_id
    session.commit()
    key = f"replacement:{replacement.id}"

    for attempt in range(stalled_orders.MAX_RESTARTS):
        assert watchdog()["restarted"] == {key: "retried"}, attempt
        assert prefect_support.read_run(deployed.api, run_id).state.name == "AwaitingRetry"
        assert watchdog()["restarted"] == {}  # scheduled again: alive, left alone
        prefect_support.fail_run(deployed.api, run_id)

    assert watchdog()["restarted"] == {key: "escalated"}
    session.expire_all()
    failed = session.get(DomainReplacement, replacement.id)
    assert failed.status == "failed" and "instructor" in (failed.status_reason or "")
    # The account keeps working: only the replacement is failed.
    assert session.get(Provision, failed.provision_id).status == "active"
    told = {n.recipient for n in session.scalars(select(Notification))}
    assert told == {"silentswap@student.test", "admin@school.test"}
    assert watchdog()["restarted"] == {}
