"""What the operator's Zapmail account must hold: paid orders, upgrades and replacements."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.capacity import paid_need
from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from tests.factories import make_provision
from tests.factories import make_user


def _replacement(session: Session, status: str, *, paid: bool, stem: str) -> DomainReplacement:
    user = make_user(session, f"{stem}@student.test")
    provision = make_provision(session, user, status="active", paid_at=utcnow())
    old = Domain(provision_id=provision.id, name=f"{stem}-old.com", purchase_state="purchased")
    new = Domain(
        provision_id=provision.id,
        name=f"{stem}-new.com",
        price_cents=1299,
        purchase_state="selected",
    )
    session.add_all([old, new])
    session.flush()
    row = DomainReplacement(
        provision_id=provision.id,
        old_domain_id=old.id,
        new_domain_id=new.id,
        reason="admin",
        payment="charged",
        fee_cents=2900,
        status=status,
        paid_at=utcnow() if paid else None,
    )
    session.add(row)
    session.flush()
    return row


def test_a_paid_replacement_needs_its_new_domain_and_mailboxes_an_unpaid_one_nothing(
    session: Session,
) -> None:
    before = paid_need(session)
    _replacement(session, "pending_payment", paid=False, stem="unpaid")
    _replacement(session, "completed", paid=True, stem="done")
    assert paid_need(session) == before
    row = _replacement(session, "provisioning", paid=True, stem="paid")
    need = paid_need(session)
    mailboxes = row.provision.tier.mailboxes_per_domain
    assert (need.domains, need.cents, need.mailboxes) == (
        before.domains + 1,
        before.cents + 1299,
        before.mailboxes + mailboxes,
    )
