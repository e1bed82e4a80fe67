"""Subscription and invoice events act on what Stripe reports, never on the signed body.

Every test here drives a real sandbox subscription (a paid checkout, renewals declined or
paid, Stripe's own dunning moves) and delivers the sandbox's events; the forged cases resend a
genuine body with its status changed, correctly signed, which only asking Stripe tells apart.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import replacements
from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from core.models import OutboxMessage
from core.models import Provision
from core.models import Upgrade
from tests.factories import make_user
from tests.factories import tiers
from tests.portal import prefect_support
from tests.portal.helpers import EventFeed
from tests.portal.helpers import event
from tests.portal.helpers import pay
from tests.portal.helpers import post_event
from tests.portal.helpers import signed_in
from tests.portal.helpers import wizard_to_checkout

CANCEL = "cancel-provision/on-demand"


class LiveOrder:
    """An active order on a real sandbox subscription, with the feed of Stripe's events."""

    def __init__(self, app: Flask, session: Session, sandbox: Any, brand: str) -> None:
        make_user(session, "ann@example.com")
        session.commit()
        self.client = signed_in(app, "ann@example.com")
        self.session = session
        self.sandbox = sandbox
        self.feed = EventFeed(sandbox)
        sid = wizard_to_checkout(self.client, session, brand)
        pay(sandbox, sid)
        self.deliver()
        provision = self.provision()
        assert provision.stripe_subscription_id, "the paid checkout named no subscription"
        # The pipeline is not under test here: the order is set up and live.
        provision.status, provision.activated_at = "active", utcnow()
        session.commit()
        self.subscription = provision.stripe_subscription_id

    def provision(self) -> Provision:
        """The order as the portal holds it now."""
        self.session.expire_all()
        return self.session.scalars(select(Provision)).one()

    def deliver(self, kinds: tuple[str, ...] = ()) -> list[Any]:
        """Deliver Stripe's new events (only ``kinds`` when given); return their outcomes."""
        fresh = [e for e in self.feed.new() if not kinds or e["type"] in kinds]
        return [post_event(self.client, json.dumps(e).encode()).json.get("outcome") for e in fresh]

    def stripe(self, method: str, path: str, **data: Any) -> dict[str, Any]:
        """Call the sandbox's Stripe API as the operator's key would."""
        response = httpx.request(
            method,
            f"{self.sandbox.stripe_url}{path}",
            data=data,
            headers={"Authorization": "Bearer sk_test_sandbox"},
        )
        response.raise_for_status()
        return dict(response.json())

    def decline_renewal(self) -> str:
        """Stripe renews the subscription and the card is declined; return the open invoice."""
        answer = self.sandbox.control(
            "POST", f"/stripe/subscriptions/{self.subscription}/advance", json={"fail": True}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["invoice"]["id"])

    def last_event(self, kind: str) -> dict[str, Any]:
        """The newest event of ``kind`` the sandbox emitted."""
        events = self.sandbox.control("GET", f"/stripe/events?type={kind}").json()["events"]
        return dict(events[-1])


def _forged(genuine: dict[str, Any], **changes: Any) -> bytes:
    """A genuine event resent under a new id with its object's fields changed."""
    obj = {**genuine["data"]["object"], **changes}
    return event(genuine["type"], obj, created=int(time.time()))


@pytest.fixture
def order(app: Flask, session: Session, portal_sandbox: Any, request: Any) -> LiveOrder:
    return LiveOrder(app, session, portal_sandbox, f"live{request.node.name[-12:]}")


def test_a_declined_renewal_makes_the_order_past_due_and_paying_makes_it_active(
    order: LiveOrder,
) -> None:
    invoice = order.decline_renewal()
    order.deliver()
    assert order.provision().status == "past_due"
    order.stripe("POST", f"/v1/invoices/{invoice}/pay")
    order.deliver()
    fresh = order.provision()
    assert (fresh.status, fresh.status_reason, fresh.subscription_status) == (
        "active",
        None,
        "active",
    )


def test_the_failed_renewal_invoice_alone_makes_the_order_past_due(order: LiveOrder) -> None:
    order.decline_renewal()
    assert order.deliver(("invoice.payment_failed",)) == ["active->past_due"]
    assert order.provision().status == "past_due"


def test_an_older_event_than_the_state_applied_is_stale(order: LiveOrder) -> None:
    order.decline_renewal()
    order.deliver()
    genuine = order.last_event("customer.subscription.updated")
    older = {**genuine, "id": "evt_older_copy", "created": genuine["created"] - 60}
    answer = post_event(order.client, json.dumps(older).encode())
    assert answer.json["outcome"] == "stale"
    assert order.provision().status == "past_due"


@pytest.mark.parametrize("outcome", ["unpaid", "paused"])
def test_unpaid_or_paused_starts_the_dunning_clock_and_paying_stops_it(
    order: LiveOrder, outcome: str
) -> None:
    invoice = order.decline_renewal()
    order.deliver()
    assert order.provision().past_due_since is None  # past_due alone: Stripe still retries
    moved = order.sandbox.control(
        "POST", f"/stripe/subscriptions/{order.subscription}/dunning", json={"outcome": outcome}
    )
    assert moved.status_code == 200, moved.text
    order.deliver()
    started = order.last_event("customer.subscription.updated")["created"]
    fresh = order.provision()
    assert fresh.status == "past_due" and fresh.subscription_status == outcome
    assert fresh.past_due_since is not None
    assert int(fresh.past_due_since.timestamp()) == started
    if outcome == "unpaid":
        order.stripe("POST", f"/v1/invoices/{invoice}/pay")
        order.deliver()
        fresh = order.provision()
        assert (fresh.status, fresh.past_due_since) == ("active", None)


def test_a_signed_body_claiming_a_cancellation_stripe_does_not_report_changes_nothing(
    order: LiveOrder,
) -> None:
    """The outside review undid orders with bodies like these; Stripe says the sub is active."""
    genuine = order.last_event("customer.subscription.created")
    for kind in ("customer.subscription.deleted", "customer.subscription.updated"):
        forged = _forged({**genuine, "type": kind}, status="canceled", canceled_at=int(time.time()))
        assert post_event(order.client, forged).json["outcome"] == "recorded"
    unpaid = _forged(genuine, status="unpaid")
    assert post_event(order.client, unpaid).json["outcome"] == "recorded"
    fresh = order.provision()
    assert (fresh.status, fresh.cancelled_at, fresh.past_due_since) == ("active", None, None)
    assert fresh.subscription_status == "active"
    ghost = _forged(genuine, id="sub_nobody_knows")
    assert post_event(order.client, ghost).json["outcome"] == "unknown_subscription"


def test_a_signed_body_claiming_a_recovery_stripe_does_not_report_changes_nothing(
    order: LiveOrder,
) -> None:
    order.decline_renewal()
    order.deliver()
    genuine = order.last_event("customer.subscription.updated")
    forged = _forged(genuine, status="active")
    assert post_event(order.client, forged).json["outcome"] == "recorded"
    assert order.provision().status == "past_due"
    paid = order.last_event("invoice.payment_failed")
    claim = {**paid, "id": "evt_forged_paid", "type": "invoice.paid", "created": int(time.time())}
    claim["data"] = {"object": {**paid["data"]["object"], "status": "paid"}}
    answer = post_event(order.client, json.dumps(claim).encode())
    assert answer.json["outcome"] == "invoice_not_paid (open)"
    assert order.provision().status == "past_due"


def test_a_forged_paid_upgrade_fee_starts_nothing_until_stripe_reports_it_paid(
    order: LiveOrder, session: Session
) -> None:
    """An unpaid upgrade fee invoice, claimed paid in a signed body, must not start the run."""
    provision = order.provision()
    growth = tiers(session)["growth"]
    upgrade = Upgrade(
        provision_id=provision.id,
        from_tier_id=provision.tier_id,
        to_tier_id=growth.id,
        proration_paid_at=utcnow(),
    )
    session.add(upgrade)
    session.commit()
    meta = {"metadata[upgrade_id]": str(upgrade.id), "metadata[kind]": "upgrade"}
    invoice = order.stripe(
        "POST", "/v1/invoices", customer=provision.stripe_customer_id, auto_advance="false", **meta
    )
    order.stripe(
        "POST",
        "/v1/invoiceitems",
        customer=provision.stripe_customer_id,
        invoice=invoice["id"],
        amount="5000",
        currency="usd",
    )
    order.stripe("POST", f"/v1/invoices/{invoice['id']}/finalize")
    order.deliver()
    opened = order.stripe("GET", f"/v1/invoices/{invoice['id']}")
    forged = event("invoice.paid", {**opened, "status": "paid"})
    assert post_event(order.client, forged).json["outcome"] == "invoice_not_paid (open)"
    session.expire_all()
    assert session.get(Upgrade, upgrade.id).status == "pending_payment"  # type: ignore[union-attr]
    assert session.scalar(select(OutboxMessage).where(OutboxMessage.key.like("upgrade:%"))) is None

    order.stripe("POST", f"/v1/invoices/{invoice['id']}/pay")
    assert "upgrade_started" in order.deliver()
    session.expire_all()
    assert session.get(Upgrade, upgrade.id).status == "provisioning"  # type: ignore[union-attr]
    unknown = event("invoice.paid", {**opened, "id": "in_nobody_knows"})
    assert post_event(order.client, unknown).json["outcome"] == "unknown_invoice"


def test_stripe_unreachable_while_reading_a_subscription_answers_503(order: LiveOrder) -> None:
    genuine = order.last_event("customer.subscription.created")
    order.sandbox.add_fault(
        vendor="stripe",
        method="GET",
        path=f"/v1/subscriptions/{order.subscription}",
        kind="status",
        status=500,
        times=None,
    )
    answer = post_event(order.client, _forged(genuine, status="canceled"))
    assert answer.status_code == 503
    assert order.provision().status == "active"


@pytest.mark.prefect
def test_a_subscription_stripe_ended_cancels_once_and_starts_one_cleanup(
    app_factory: Any, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    order = LiveOrder(app_factory(prefect_api_url=portal_prefect), session, portal_sandbox, "ended")
    before = prefect_support.run_ids(portal_prefect, CANCEL)
    order.stripe("DELETE", f"/v1/subscriptions/{order.subscription}")
    assert any(str(o).startswith("active->cancelled") for o in order.deliver()), "not cancelled"
    deleted = order.last_event("customer.subscription.deleted")
    again = {**deleted, "id": "evt_deleted_again"}
    assert post_event(order.client, json.dumps(again).encode()).json["outcome"] == "recorded"
    from portal import outbox_sender

    assert outbox_sender.wait_idle(30)
    fresh = order.provision()
    assert fresh.status == "cancelled" and fresh.cancelled_at is not None
    assert len(prefect_support.run_ids(portal_prefect, CANCEL) - before) == 1


def test_subscription_events_before_the_paid_checkout_start_nothing(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    """Only a paid checkout starts provisioning (M2); a subscription event is recorded only."""
    make_user(session, "ann@example.com")
    session.commit()
    client = signed_in(app, "ann@example.com")
    pay(portal_sandbox, wizard_to_checkout(client, session, "subsfirst"))
    events = EventFeed(portal_sandbox).new()
    first = [e for e in events if e["type"].startswith("customer.subscription.")]
    assert first, "the sandbox emitted no subscription event"
    outcomes = {post_event(client, json.dumps(e).encode()).json["outcome"] for e in first}
    assert outcomes == {"recorded"}
    session.expire_all()
    provision = session.scalars(select(Provision)).one()
    assert (provision.status, provision.subscription_status) == ("pending_payment", "active")
    rest = [e for e in events if e not in first]
    outcomes = {post_event(client, json.dumps(e).encode()).json.get("outcome") for e in rest}
    assert "started" in outcomes


def test_a_replacement_fee_starts_its_run_once_and_only_when_stripe_reports_it_paid(
    order: LiveOrder, session: Session
) -> None:
    provision = order.provision()
    provision.tier.replacements_included = 0  # every replacement is charged
    burned = Domain(
        provision_id=provision.id,
        name="burned-sender.com",
        purchase_state="purchased",
        burned_at=utcnow(),
    )
    session.add(burned)
    session.flush()
    replacement = replacements.request_replacement(
        session,
        provision=provision,
        old_domain=burned,
        new_name="fresh-sender.com",
        price_cents=1299,
        requested_by_id=provision.user_id,
    )
    session.commit()
    assert (replacement.status, replacement.payment) == ("pending_payment", "charged")
    meta = {"metadata[replacement_id]": str(replacement.id), "metadata[kind]": "replacement"}
    invoice = order.stripe(
        "POST", "/v1/invoices", customer=provision.stripe_customer_id, auto_advance="false", **meta
    )
    order.stripe(
        "POST",
        "/v1/invoiceitems",
        customer=provision.stripe_customer_id,
        invoice=invoice["id"],
        amount=str(replacement.fee_cents),
        currency="usd",
    )
    order.stripe("POST", f"/v1/invoices/{invoice['id']}/finalize")
    order.deliver()
    opened = order.stripe("GET", f"/v1/invoices/{invoice['id']}")
    forged = event("invoice.paid", {**opened, "status": "paid"})
    assert post_event(order.client, forged).json["outcome"] == "invoice_not_paid (open)"
    key = replacements.replacement_key(replacement.id)
    assert session.scalar(select(OutboxMessage).where(OutboxMessage.key == key)) is None

    order.stripe("POST", f"/v1/invoices/{invoice['id']}/pay")
    assert "replacement_started" in order.deliver()
    again = {**order.last_event("invoice.paid"), "id": "evt_paid_again"}
    answer = post_event(order.client, json.dumps(again).encode())
    assert answer.json["outcome"] == "replacement_already_started"
    session.expire_all()
    fresh = session.get(DomainReplacement, replacement.id)
    assert fresh is not None and (fresh.status, fresh.stripe_invoice_id) == (
        "provisioning",
        invoice["id"],
    )
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.key == key)).all()
    assert [r.payload["parameters"] for r in rows] == [{"replacement_id": replacement.id}]
