"""POST /webhooks/stripe: verification on the raw body, exactly-once fulfilment, ordering."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Provision
from core.models import WebhookEvent
from tests.portal import prefect_support
from tests.portal.helpers import checkout_session
from tests.portal.helpers import event
from tests.portal.helpers import make_provision
from tests.portal.helpers import make_user
from tests.portal.helpers import post_event
from tests.portal.helpers import sign

PROVISION = "provision/on-demand"
SUB = f"sub_live_{uuid.uuid4().hex[:12]}"
CANCEL = "cancel-provision/on-demand"


def _events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def _pending(session: Session, email: str = "ann@example.com") -> Provision:
    user = make_user(session, email)
    # Unique ids: Prefect's idempotency keys outlive the rows (SQLite reuses row ids between tests).
    provision = make_provision(
        session,
        user,
        status="pending_payment",
        stripe_checkout_session_id=f"cs_test_{uuid.uuid4().hex[:16]}",
    )
    session.commit()
    return provision


def _fresh(session: Session, provision: Provision) -> Provision:
    session.expire_all()
    fresh = session.get(Provision, provision.id)
    assert fresh is not None
    return fresh


@pytest.fixture
def prefect_app(app_factory: Any, portal_prefect: str) -> Flask:
    """The portal wired to the test Prefect API."""
    return app_factory(prefect_api_url=portal_prefect)


def test_good_signature_is_recorded_and_acknowledged(client: Any, session: Session) -> None:
    body = event("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_known_1")
    response = post_event(client, body)
    assert response.status_code == 200
    row = session.scalars(select(WebhookEvent)).one()
    assert (row.provider, row.event_id, row.event_type) == (
        "stripe",
        "evt_known_1",
        "customer.created",
    )
    assert row.processed_at is not None


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda body, headers: (
                body,
                {**headers, "Stripe-Signature": sign(body, secret="whsec_wrong")},
            ),
            id="wrong-secret",
        ),
        pytest.param(lambda body, headers: (body + b" ", headers), id="tampered-body"),
        pytest.param(
            lambda body, headers: (
                body,
                {**headers, "Stripe-Signature": sign(body, timestamp=int(time.time()) - 301)},
            ),
            id="stale-timestamp",
        ),
        pytest.param(
            lambda body, headers: (
                body,
                {k: v for k, v in headers.items() if k != "Stripe-Signature"},
            ),
            id="missing-header",
        ),
        pytest.param(
            lambda _body, headers: (
                b"{not json",
                {**headers, "Stripe-Signature": sign(b"{not json")},
            ),
            id="malformed-json",
        ),
        pytest.param(
            lambda _body, headers: (
                b'{"id": "evt_x"}',
                {**headers, "Stripe-Signature": sign(b'{"id": "evt_x"}')},
            ),
            id="no-type",
        ),
        pytest.param(
            lambda _body, headers: (b"[1, 2]", {**headers, "Stripe-Signature": sign(b"[1, 2]")}),
            id="not-an-object",
        ),
    ],
)
def test_bad_deliveries_get_400_and_write_nothing(
    client: Any, session: Session, mutate: Any
) -> None:
    provision = _pending(session)
    body = event(
        "checkout.session.completed",
        checkout_session(provision, session_id=provision.stripe_checkout_session_id),
    )
    headers = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}
    body, headers = mutate(body, headers)
    response = client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 400
    assert response.json["reason"]
    assert _events(session) == 0
    assert _fresh(session, provision).status == "pending_payment"


@pytest.mark.usefixtures("session")
def test_webhook_needs_no_csrf_token(app_factory: Any) -> None:
    client = app_factory(WTF_CSRF_ENABLED=True).test_client()
    assert post_event(client, event("customer.created", {"id": "cus_1"})).status_code == 200


def test_duplicate_event_is_stored_once(client: Any, session: Session) -> None:
    body = event("customer.created", {"id": "cus_1"}, event_id="evt_dup_1")
    assert post_event(client, body).status_code == 200
    second = post_event(client, body)
    assert second.status_code == 200
    assert second.json["status"] == "duplicate"
    assert _events(session) == 1


def test_event_for_an_unknown_session_changes_nothing(client: Any, session: Session) -> None:
    provision = _pending(session)
    obj = {
        **checkout_session(provision, session_id="cs_test_other"),
        "metadata": {},
        "client_reference_id": None,
    }
    response = post_event(client, event("checkout.session.completed", obj))
    assert response.status_code == 200
    assert response.json["outcome"] == "unknown_session"
    assert _events(session) == 1
    assert _fresh(session, provision).status == "pending_payment"


def test_metadata_naming_another_student_is_ignored(client: Any, session: Session) -> None:
    provision = _pending(session)
    other = make_user(session, "eve@example.com")
    session.commit()
    obj = checkout_session(provision, session_id="cs_test_forged")
    obj["metadata"]["user_id"] = str(other.id)
    assert (
        post_event(client, event("checkout.session.completed", obj)).json["outcome"]
        == "unknown_session"
    )
    assert _fresh(session, provision).status == "pending_payment"


@pytest.mark.prefect
def test_paid_checkout_starts_exactly_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session
) -> None:
    client = prefect_app.test_client()
    provision = _pending(session)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    body = event(
        "checkout.session.completed",
        checkout_session(provision, session_id=provision.stripe_checkout_session_id),
    )
    assert post_event(client, body).json["outcome"] == "started"
    # The same event again, and a second event for the same session: both harmless.
    assert post_event(client, body).json["status"] == "duplicate"
    again = event(
        "checkout.session.async_payment_succeeded",
        checkout_session(provision, session_id=provision.stripe_checkout_session_id),
    )
    assert post_event(client, again).json["outcome"] == "already_started"
    fresh = _fresh(session, provision)
    assert fresh.status == "provisioning"
    assert fresh.paid_at is not None
    assert (fresh.stripe_customer_id, fresh.stripe_subscription_id) == ("cus_1", "sub_1")
    new = prefect_support.run_ids(portal_prefect, PROVISION) - before
    assert new == {fresh.current_flow_run_id}
    run = prefect_support.read_run(portal_prefect, fresh.current_flow_run_id)
    assert run.parameters == {"provision_id": provision.id}
    assert run.idempotency_key == f"checkout:{provision.stripe_checkout_session_id}"


@pytest.mark.prefect
def test_unpaid_checkout_starts_nothing_until_the_async_payment_succeeds(
    prefect_app: Flask, portal_prefect: str, session: Session
) -> None:
    client = prefect_app.test_client()
    provision = _pending(session)
    sid = provision.stripe_checkout_session_id
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    unpaid = event(
        "checkout.session.completed", checkout_session(provision, session_id=sid, paid=False)
    )
    assert post_event(client, unpaid).json["outcome"] == "awaiting_payment"
    assert _fresh(session, provision).status == "pending_payment"
    assert prefect_support.run_ids(portal_prefect, PROVISION) == before
    paid = event(
        "checkout.session.async_payment_succeeded", checkout_session(provision, session_id=sid)
    )
    assert post_event(client, paid).json["outcome"] == "started"
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


def test_async_payment_failure_keeps_the_order_payable(client: Any, session: Session) -> None:
    provision = _pending(session)
    obj = checkout_session(provision, session_id=provision.stripe_checkout_session_id, paid=False)
    assert (
        post_event(client, event("checkout.session.async_payment_failed", obj)).status_code == 200
    )
    fresh = _fresh(session, provision)
    assert fresh.status == "pending_payment"
    assert "did not go through" in (fresh.status_reason or "")


def test_prefect_unreachable_answers_503_and_keeps_nothing(client: Any, session: Session) -> None:
    provision = _pending(session)
    body = event(
        "checkout.session.completed",
        checkout_session(provision, session_id=provision.stripe_checkout_session_id),
    )
    response = post_event(client, body)  # the app has no Prefect URL: start_provision fails fast
    assert response.status_code == 503
    assert _events(session) == 0
    assert _fresh(session, provision).status == "pending_payment"


@pytest.mark.prefect
def test_stripe_retry_after_a_failed_start_starts_one_run(
    app: Flask, prefect_app: Flask, portal_prefect: str, session: Session
) -> None:
    provision = _pending(session)
    body = event(
        "checkout.session.completed",
        checkout_session(provision, session_id=provision.stripe_checkout_session_id),
    )
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    assert post_event(app.test_client(), body).status_code == 503
    assert post_event(prefect_app.test_client(), body).status_code == 200
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


def test_subscription_update_before_checkout_is_harmless(client: Any, session: Session) -> None:
    provision = _pending(session)
    sub = {
        "id": "sub_1",
        "object": "subscription",
        "status": "active",
        "metadata": {"provision_id": str(provision.id), "user_id": str(provision.user_id)},
    }
    response = post_event(client, event("customer.subscription.updated", sub))
    assert response.json["outcome"] == "recorded"
    fresh = _fresh(session, provision)
    assert fresh.status == "pending_payment"  # only a paid checkout starts anything (M2)
    assert fresh.subscription_status == "active"


def _active(session: Session) -> Provision:
    user = make_user(session, "ann@example.com")
    from core.db import utcnow

    provision = make_provision(
        session,
        user,
        status="active",
        stripe_subscription_id=SUB,
        stripe_customer_id="cus_live",
        activated_at=utcnow(),
    )
    session.commit()
    return provision


def _sub(status: str) -> dict[str, Any]:
    return {"id": SUB, "object": "subscription", "status": status, "metadata": {}}


def test_subscription_past_due_then_active_again(client: Any, session: Session) -> None:
    provision = _active(session)
    now = int(time.time())
    post_event(client, event("customer.subscription.updated", _sub("past_due"), created=now))
    assert _fresh(session, provision).status == "past_due"
    post_event(client, event("customer.subscription.updated", _sub("active"), created=now + 1))
    fresh = _fresh(session, provision)
    assert fresh.status == "active"
    assert fresh.status_reason is None


def test_older_subscription_events_are_ignored(client: Any, session: Session) -> None:
    provision = _active(session)
    now = int(time.time())
    post_event(client, event("customer.subscription.updated", _sub("past_due"), created=now))
    stale = post_event(
        client, event("customer.subscription.updated", _sub("active"), created=now - 60)
    )
    assert stale.json["outcome"] == "stale"
    assert _fresh(session, provision).status == "past_due"


def test_failed_renewal_invoice_moves_to_past_due(client: Any, session: Session) -> None:
    provision = _active(session)
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "billing_reason": "subscription_cycle",
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": SUB, "metadata": {}},
        },
    }
    post_event(client, event("invoice.payment_failed", invoice))
    assert _fresh(session, provision).status == "past_due"


@pytest.mark.prefect
def test_subscription_deleted_cancels_and_starts_cleanup(
    prefect_app: Flask, portal_prefect: str, session: Session
) -> None:
    client = prefect_app.test_client()
    provision = _active(session)
    before = prefect_support.run_ids(portal_prefect, CANCEL)
    post_event(client, event("customer.subscription.deleted", _sub("canceled")))
    post_event(
        client, event("customer.subscription.deleted", _sub("canceled"))
    )  # another id, same fact
    fresh = _fresh(session, provision)
    assert fresh.status == "cancelled"
    assert fresh.cancelled_at is not None
    assert len(prefect_support.run_ids(portal_prefect, CANCEL) - before) == 1


@pytest.mark.prefect
@pytest.mark.postgres_only
def test_concurrent_duplicate_deliveries_start_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session
) -> None:
    provision = _pending(session)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    sid = provision.stripe_checkout_session_id
    same = event(
        "checkout.session.completed",
        checkout_session(provision, session_id=sid),
        event_id="evt_race_1",
    )
    other = event(
        "checkout.session.async_payment_succeeded",
        checkout_session(provision, session_id=sid),
        event_id="evt_race_2",
    )
    barrier = threading.Barrier(4)
    results: list[int] = []

    def deliver(body: bytes) -> None:
        client = prefect_app.test_client()
        barrier.wait()
        results.append(post_event(client, body).status_code)

    threads = [threading.Thread(target=deliver, args=(b,)) for b in (same, same, other, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200, 200, 200, 200]
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1
    assert _events(session) == 2
    assert _fresh(session, provision).status == "provisioning"


@pytest.mark.prefect
def test_real_sandbox_events_in_any_order_and_twice_start_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """Drive a real checkout in the sandbox, then deliver all its events shuffled and duplicated."""
    from tests.portal.helpers import tiers

    tiers(session)
    user = make_user(session, "ann@example.com")
    session.commit()
    client = prefect_app.test_client()
    client.post(
        "/auth/login", data={"email": "ann@example.com", "password": "correct-horse-battery"}
    )
    starter = next(t for t in tiers(session).values() if t.slug == "starter")
    client.post("/wizard/package", data={"tier_id": starter.id})
    client.post("/wizard/domains", data={"action": "search", "brand": "shuffleco"})
    page = client.get("/wizard/domains").get_data(as_text=True)
    import re

    for name in re.findall(r'value="add"><input type="hidden" name="name" value="([^"]+)"', page)[
        :3
    ]:
        client.post("/wizard/domains", data={"action": "add", "name": name})
    client.post("/wizard/domains", data={"action": "continue"})
    client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Ann",
            "last_name": "Lee",
            "pattern_0": "{first}",
            "pattern_1": "{first}.{last}",
            "action": "continue",
        },
    )
    checkout_url = client.post("/wizard/review").headers["Location"]
    session_id = checkout_url.rsplit("/", 1)[1]
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{session_id}/complete", json={"method": "card"}
    ).raise_for_status()
    events = portal_sandbox.control("GET", "/stripe/events").json()["events"]
    assert any(e["type"] == "checkout.session.completed" for e in events)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    deliveries = [json.dumps(e).encode() for e in events] * 2
    random.Random(5).shuffle(deliveries)
    for body in deliveries:
        assert post_event(client, body).status_code == 200
    provision = session.scalars(select(Provision).where(Provision.user_id == user.id)).one()
    assert provision.status == "provisioning"
    assert provision.stripe_subscription_id and provision.stripe_customer_id
    assert provision.subscription_status == "active"
    # Our ids travel on the subscription too (subscription_data.metadata), for invoice events.
    subscription = httpx.get(
        f"{portal_sandbox.stripe_url}/v1/subscriptions/{provision.stripe_subscription_id}",
        headers={"Authorization": "Bearer sk_test_sandbox"},
    ).json()
    assert subscription["metadata"]["provision_id"] == str(provision.id)
    assert subscription["metadata"]["user_id"] == str(user.id)
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1
    assert _events(session) == len(events)


@pytest.mark.prefect
def test_failed_bank_debit_then_card_payment_provisions_once(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """A delayed payment fails, the student pays again by card: one run, the new subscription."""
    from tests.portal.helpers import EventFeed
    from tests.portal.helpers import wizard_to_checkout

    user = make_user(session, "ann@example.com")
    session.commit()
    client = prefect_app.test_client()
    client.post(
        "/auth/login", data={"email": "ann@example.com", "password": "correct-horse-battery"}
    )
    feed = EventFeed(portal_sandbox)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    first = wizard_to_checkout(client, session, "bankdebit")
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{first}/complete", json={"method": "bank_debit"}
    )
    feed.deliver(client)
    provision = session.scalars(select(Provision).where(Provision.user_id == user.id)).one()
    assert provision.status == "pending_payment"
    assert "processing the payment" in (provision.status_reason or "")
    # Paying again while the bank payment is in flight is refused.
    assert client.post("/wizard/review").headers["Location"] == "/progress"
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{first}/async_payment", json={"outcome": "failed"}
    )
    feed.deliver(client)
    provision = _fresh(session, provision)
    assert provision.status == "pending_payment"
    assert "did not go through" in (provision.status_reason or "")
    assert prefect_support.run_ids(portal_prefect, PROVISION) == before
    second = client.post("/wizard/review").headers["Location"].rsplit("/", 1)[1]
    assert second != first
    portal_sandbox.control("POST", f"/stripe/checkout/{second}/complete", json={"method": "card"})
    feed.deliver(client)
    provision = _fresh(session, provision)
    assert provision.status == "provisioning"
    assert provision.stripe_checkout_session_id == second
    paid = portal_sandbox.control("GET", "/stripe/events?type=checkout.session.completed").json()[
        "events"
    ][-1]
    assert provision.stripe_subscription_id == paid["data"]["object"]["subscription"]
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


@pytest.mark.prefect
def test_bank_debit_that_clears_starts_provisioning(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    from tests.portal.helpers import EventFeed
    from tests.portal.helpers import wizard_to_checkout

    make_user(session, "ann@example.com")
    session.commit()
    client = prefect_app.test_client()
    client.post(
        "/auth/login", data={"email": "ann@example.com", "password": "correct-horse-battery"}
    )
    feed = EventFeed(portal_sandbox)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    sid = wizard_to_checkout(client, session, "slowbank")
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{sid}/complete", json={"method": "bank_debit"}
    )
    feed.deliver(client)
    assert prefect_support.run_ids(portal_prefect, PROVISION) == before
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{sid}/async_payment", json={"outcome": "succeeded"}
    )
    outcomes = [r.json.get("outcome") for r in feed.deliver(client)]
    assert "started" in outcomes
    provision = session.scalars(select(Provision)).one()
    assert (provision.status, provision.status_reason) == ("provisioning", None)
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


@pytest.mark.parametrize(
    "event_type,obj",
    [
        ("customer.subscription.updated", {"id": SUB, "object": "subscription"}),
        ("customer.subscription.deleted", {"id": SUB, "metadata": {}}),
        ("invoice.paid", {"id": 5, "billing_reason": "subscription_cycle"}),
    ],
    ids=["no-status", "deleted-no-status", "id-not-a-string"],
)
def test_signed_event_missing_what_its_handler_needs_is_400_and_writes_nothing(
    client: Any, session: Session, event_type: str, obj: dict[str, Any]
) -> None:
    provision = _active(session)
    response = post_event(client, event(event_type, obj))
    assert response.status_code == 400
    assert response.json["reason"] == "malformed event object"
    assert _events(session) == 0
    fresh = _fresh(session, provision)
    assert (fresh.status, fresh.subscription_status, fresh.stripe_event_at) == (
        "active",
        None,
        None,
    )
