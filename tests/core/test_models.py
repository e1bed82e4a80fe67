"""Constraints that protect users and money hold on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Tier
from core.models import WebhookEvent
from tests.factories import ProvisionFactory


def test_second_provision_for_a_student_is_refused(backend_session: Session) -> None:
    first = ProvisionFactory(session=backend_session, user__email="a@example.com")
    backend_session.commit()
    backend_session.add(Provision(user_id=first.user_id, tier_id=first.tier_id))
    with pytest.raises(IntegrityError):
        backend_session.commit()


def test_domain_names_are_unique_across_students(backend_session: Session) -> None:
    alice = ProvisionFactory(session=backend_session, user__email="alice@example.com")
    bob = ProvisionFactory(session=backend_session, user__email="bob@example.com")
    backend_session.add(Domain(provision=alice, name="acme.com"))
    backend_session.commit()
    backend_session.add(Domain(provision=bob, name="acme.com"))
    with pytest.raises(IntegrityError):
        backend_session.commit()


def test_mailbox_addresses_are_unique(backend_session: Session) -> None:
    provision = ProvisionFactory(session=backend_session, user__email="a@example.com")
    domain = Domain(provision=provision, name="acme.com")
    backend_session.add(domain)
    backend_session.add(
        Mailbox(
            domain=domain, address="tim@acme.com", username="tim", first_name="Tim", last_name="K"
        )
    )
    backend_session.commit()
    backend_session.add(
        Mailbox(
            domain=domain, address="tim@acme.com", username="tim", first_name="Tim", last_name="K"
        )
    )
    with pytest.raises(IntegrityError):
        backend_session.commit()


@pytest.mark.parametrize(
    "field", ["stripe_checkout_session_id", "stripe_subscription_id", "stripe_customer_id"]
)
def test_stripe_ids_are_unique(backend_session: Session, field: str) -> None:
    ProvisionFactory(session=backend_session, user__email="a@example.com", **{field: "cs_test_123"})
    backend_session.commit()
    with pytest.raises(IntegrityError):
        ProvisionFactory(
            session=backend_session, user__email="b@example.com", **{field: "cs_test_123"}
        )


def test_a_webhook_event_is_stored_once_per_provider(backend_session: Session) -> None:
    backend_session.add(WebhookEvent(provider="stripe", event_id="evt_1", event_type="x"))
    # The same id from another provider is a different event.
    backend_session.add(WebhookEvent(provider="zapmail", event_id="evt_1", event_type="x"))
    backend_session.commit()
    backend_session.add(WebhookEvent(provider="stripe", event_id="evt_1", event_type="x"))
    with pytest.raises(IntegrityError):
        backend_session.commit()


def test_step_keys_are_unique_per_provision(backend_session: Session) -> None:
    provision = ProvisionFactory(session=backend_session, user__email="a@example.com")
    backend_session.add(ProvisioningStep(provision=provision, step_key="buy_domains"))
    backend_session.commit()
    backend_session.add(ProvisioningStep(provision=provision, step_key="buy_domains"))
    with pytest.raises(IntegrityError):
        backend_session.commit()


def test_unknown_provision_status_is_refused(backend_session: Session) -> None:
    with pytest.raises(IntegrityError):
        ProvisionFactory(session=backend_session, user__email="a@example.com", status="exploded")


def test_a_tier_cannot_exceed_five_mailboxes_per_domain(backend_session: Session) -> None:
    backend_session.add(
        Tier(
            slug="huge",
            name="Huge",
            domain_count=1,
            mailboxes_per_domain=6,
            setup_cents=1,
            monthly_cents=1,
        )
    )
    with pytest.raises(IntegrityError):
        backend_session.commit()


def test_timestamps_are_stored_and_returned_in_utc(backend_session: Session) -> None:
    paid = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    provision = ProvisionFactory(session=backend_session, user__email="a@example.com", paid_at=paid)
    backend_session.commit()
    backend_session.expire_all()
    reloaded = backend_session.get(Provision, provision.id)
    assert reloaded is not None
    assert reloaded.paid_at == paid
    assert reloaded.paid_at.tzinfo == UTC
    assert reloaded.paid_at.hour == 10
    assert reloaded.created_at.tzinfo == UTC


def test_naive_datetimes_are_refused(backend_session: Session) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        ProvisionFactory(
            session=backend_session, user__email="a@example.com", paid_at=datetime(2026, 1, 1)
        )


def test_a_cancelled_provision_cannot_be_moved_out_of_cancelled(backend_session: Session) -> None:
    provision = ProvisionFactory(session=backend_session, user__email="gone@student.test")
    provision.status = "cancelled"
    backend_session.commit()

    provision.status = "active"
    with pytest.raises(IntegrityError, match="cancelled is terminal"):
        backend_session.flush()
    backend_session.rollback()

    # Other fields of a cancelled provision may still change (the release run records them).
    provision.waiting_for = None
    provision.status_reason = "released"
    backend_session.commit()
    assert backend_session.get(Provision, provision.id).status == "cancelled"
