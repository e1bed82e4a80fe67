"""Orders: a paid Checkout Session is provisioned only as Stripe reports it and as its snapshot
froze it; any other paid session is refunded (through the outbox), never provisioned.

Everything goes through the real wizard, the real Stripe sandbox over HTTP and the real webhook
endpoint with signed events; nothing is mocked.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import OrderSnapshot
from core.models import OutboxMessage
from core.models import Provision
from core.models import Tier
from portal import orders
from tests.factories import make_user
from tests.factories import tiers
from tests.portal.helpers import AuthActions
from tests.portal.helpers import EventFeed
from tests.portal.helpers import event
from tests.portal.helpers import keep_payable
from tests.portal.helpers import pay
from tests.portal.helpers import post_event
from tests.portal.helpers import wizard_to_checkout

REFUND = "refund-order/on-demand"
PROVISION = "provision/on-demand"


@pytest.fixture
def student(session: Session, auth: Any) -> Any:
    """A signed-in student and the default tiers."""
    tiers(session)
    user = make_user(session, f"ann{uuid.uuid4().hex[:6]}@example.com")
    session.commit()
    auth.login(user.email)
    return user


def _provision(session: Session, user: Any) -> Provision:
    session.expire_all()
    return session.scalars(select(Provision).where(Provision.user_id == user.id)).one()


def _snapshot(session: Session, checkout_id: str) -> OrderSnapshot:
    session.expire_all()
    return session.scalars(
        select(OrderSnapshot).where(OrderSnapshot.checkout_session_id == checkout_id)
    ).one()


def _outbox(session: Session) -> dict[str, dict[str, Any]]:
    session.expire_all()
    return {row.key: row.payload for row in session.scalars(select(OutboxMessage))}


def _deliver(client: Any, feed: EventFeed) -> list[str]:
    """Every new sandbox event to the webhook; the checkout outcomes it answered."""
    outcomes = []
    for ev in feed.new():
        response = post_event(client, json.dumps(ev).encode())
        assert response.status_code == 200, response.get_data(as_text=True)
        if ev["type"].startswith("checkout.session."):
            outcomes.append(response.json["outcome"])
    return outcomes


def _change_order(client: Any) -> str:
    """Swap one domain for another and press Pay again; return the new session id."""
    page = client.get("/wizard/domains").get_data(as_text=True)
    chosen = re.findall(r'value="remove"><input type="hidden" name="name" value="([^"]+)"', page)
    offered = re.findall(r'value="add"><input type="hidden" name="name" value="([^"]+)"', page)
    assert chosen and offered, "the domains page lists the chosen and the offered names"
    client.post("/wizard/domains", data={"action": "remove", "name": chosen[0]})
    client.post("/wizard/domains", data={"action": "add", "name": offered[0]})
    assert client.post("/wizard/domains", data={"action": "continue"}).status_code == 302
    client.post("/wizard/mailboxes", data={"action": "continue", **_names()})
    return _press_pay(client)


def _change_patterns(client: Any) -> str:
    """Pick other address patterns (a second tab) and press Pay again; return the session id."""
    client.post(
        "/wizard/mailboxes",
        data={**_names(), "pattern_1": "{f}{last}", "action": "continue"},
    )
    return _press_pay(client)


def _names() -> dict[str, str]:
    return {
        "first_name": "Ann",
        "last_name": "Lee",
        "pattern_0": "{first}",
        "pattern_1": "{first}.{last}",
    }


def _press_pay(client: Any) -> str:
    response = client.post("/wizard/review")
    assert response.status_code == 303, response.get_data(as_text=True)
    return str(response.headers["Location"].rsplit("/", 1)[1])


@pytest.fixture
def prefect_app(app_factory: Any, portal_prefect: str) -> Flask:
    """The portal wired to the test Prefect API (so a wrongly started run would really start)."""
    return app_factory(prefect_api_url=portal_prefect)


def test_a_signed_event_for_a_session_stripe_never_made_changes_nothing(
    prefect_app: Flask, session: Session
) -> None:
    client = prefect_app.test_client()
    tiers(session)
    user = make_user(session, f"ann{uuid.uuid4().hex[:6]}@example.com")
    session.commit()
    AuthActions(client).login(user.email)
    real = wizard_to_checkout(client, session, "forgedbrand")
    provision = _provision(session, user)
    tier = session.get(Tier, provision.tier_id)
    assert tier is not None
    # Read without requiring it, so the same test shows the defect on code without snapshots.
    order_id = session.scalar(
        select(OrderSnapshot.id).where(OrderSnapshot.checkout_session_id == real)
    )
    claims = {
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": tier.setup_cents + tier.monthly_cents,
        "currency": tier.currency,
        "customer": "cus_forged",
        "subscription": "sub_forged",
        "client_reference_id": str(provision.id),
        "metadata": {
            "provision_id": str(provision.id),
            "user_id": str(user.id),
            "order_id": str(order_id),
            "kind": "provision",
        },
    }
    # A session id Stripe never issued, and the real (open, unpaid) session claimed as paid.
    for forged_id, expected in (
        (f"cs_test_{uuid.uuid4().hex[:24]}", "unknown_session"),
        (real, "not_complete"),
    ):
        body = event("checkout.session.completed", {**claims, "id": forged_id})
        response = post_event(client, body)
        assert response.status_code == 200
        assert response.json["outcome"] == expected
    fresh = _provision(session, user)
    assert fresh.status == "pending_payment"
    assert fresh.stripe_subscription_id is None and fresh.paid_at is None
    assert _outbox(session) == {}
    assert _snapshot(session, real).status == "open"


@pytest.mark.usefixtures("student")
def test_a_payment_for_an_order_changed_afterwards_is_refunded_and_the_current_one_provisions(
    client: Any, session: Session, portal_sandbox: Any, student: Any
) -> None:
    feed = EventFeed(portal_sandbox)
    first = wizard_to_checkout(client, session, "changedbrand")
    keep_payable(portal_sandbox, first)
    second = _change_order(client)
    assert second != first
    old, new = _snapshot(session, first), _snapshot(session, second)
    assert (old.status, new.status) == ("superseded", "open")
    assert old.domains != new.domains

    # The older page was still payable (its expiry failed) and is paid.
    pay(portal_sandbox, first)
    assert _deliver(client, feed) == ["refund_queued"]
    provision = _provision(session, student)
    assert provision.status == "pending_payment"
    old = _snapshot(session, first)
    assert old.status == "superseded"
    assert old.decision_reason == orders.SUPERSEDED_REASON
    assert _outbox(session) == {
        f"refund:{first}": {"deployment": REFUND, "parameters": {"order_id": old.id}}
    }

    # The current page is paid: exactly its snapshot is provisioned.
    paid = pay(portal_sandbox, second)
    assert _deliver(client, feed) == ["started"]
    provision = _provision(session, student)
    new = _snapshot(session, second)
    assert provision.status == "provisioning"
    assert new.status == "paid"
    assert sorted(d.name for d in provision.domains) == sorted(new.domains)
    assert provision.tier_id == new.tier_id
    assert provision.username_patterns == new.username_patterns
    assert provision.stripe_checkout_session_id == second
    assert provision.stripe_subscription_id == paid["subscription"]
    assert _outbox(session)[f"checkout:{second}"] == {
        "deployment": PROVISION,
        "parameters": {"provision_id": provision.id},
    }
    assert f"checkout:{first}" not in _outbox(session)
    # Redelivering everything decides nothing again.
    for ev in portal_sandbox.control("GET", "/stripe/events").json()["events"]:
        post_event(client, json.dumps(ev).encode())
    assert set(_outbox(session)) == {f"refund:{first}", f"checkout:{second}"}
    assert _snapshot(session, first).status == "superseded"


@pytest.mark.usefixtures("student")
def test_a_second_tab_paying_after_the_first_is_refunded(
    client: Any, session: Session, portal_sandbox: Any, student: Any
) -> None:
    feed = EventFeed(portal_sandbox)
    first = wizard_to_checkout(client, session, "tabbrand")
    keep_payable(portal_sandbox, first)
    second = _change_patterns(client)
    paid = pay(portal_sandbox, second)
    assert _deliver(client, feed) == ["started"]
    pay(portal_sandbox, first)
    assert _deliver(client, feed) == ["refund_queued"]

    provision = _provision(session, student)
    loser = _snapshot(session, first)
    assert provision.status == "provisioning"
    assert provision.stripe_subscription_id == paid["subscription"]
    assert provision.username_patterns == ["{first}", "{f}{last}"]
    assert loser.decision_reason == orders.ALREADY_PAID_REASON
    assert set(_outbox(session)) == {f"checkout:{second}", f"refund:{first}"}


@pytest.mark.usefixtures("student")
def test_a_session_whose_prices_differ_from_its_snapshot_is_refunded(
    client: Any, session: Session, portal_sandbox: Any, student: Any, app: Flask
) -> None:
    """Stripe's own copy is compared: a session for the right order at the wrong price loses."""
    from portal import billing

    feed = EventFeed(portal_sandbox)
    checkout_id = wizard_to_checkout(client, session, "pricebrand")
    snapshot = _snapshot(session, checkout_id)
    provision = _provision(session, student)
    # A session carrying this order's metadata but only the monthly price (no setup fee).
    with app.app_context():
        cheap = billing.stripe_client().v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "line_items": [{"price": snapshot.monthly_price_id, "quantity": 1}],
                "success_url": "http://portal.test/wizard/success",
                "metadata": {
                    "provision_id": str(provision.id),
                    "user_id": str(student.id),
                    "order_id": str(snapshot.id),
                },
            }
        )
    pay(portal_sandbox, cheap.id)
    assert _deliver(client, feed) == ["refund_queued"]
    assert _provision(session, student).status == "pending_payment"
    recorded = _snapshot(session, cheap.id)
    assert recorded.decision_reason == orders.UNKNOWN_ORDER_REASON
    assert _snapshot(session, checkout_id).status == "open"
    assert set(_outbox(session)) == {f"refund:{cheap.id}"}


@pytest.mark.usefixtures("student")
def test_the_success_page_of_a_losing_session_says_why(
    client: Any, session: Session, portal_sandbox: Any
) -> None:
    first = wizard_to_checkout(client, session, "successbrand")
    keep_payable(portal_sandbox, first)
    _change_order(client)
    pay(portal_sandbox, first)
    page = client.get(f"/wizard/success?session_id={first}", follow_redirects=True)
    assert page.status_code == 200
    assert "older payment was not used" in page.get_data(as_text=True)
    assert _snapshot(session, first).decision_reason == orders.SUPERSEDED_REASON
