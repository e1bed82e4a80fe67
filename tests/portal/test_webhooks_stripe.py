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

from core import outbox
from core.models import Notification
from core.models import OutboxMessage
from core.models import Provision
from core.models import WebhookEvent
from portal import outbox_sender
from tests.factories import make_provision
from tests.factories import make_user
from tests.portal import prefect_support
from tests.portal.helpers import AuthActions
from tests.portal.helpers import EventFeed
from tests.portal.helpers import checkout_session
from tests.portal.helpers import event
from tests.portal.helpers import pay
from tests.portal.helpers import post_event
from tests.portal.helpers import sign
from tests.portal.helpers import signed_in
from tests.portal.helpers import wizard_to_checkout

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


def _settled() -> None:
    """Wait until the portal's outbox sender has started what the deliveries decided."""
    assert outbox_sender.wait_idle(30)


def _paid_checkout(client: Any, session: Session, sandbox: Any, brand: str) -> str:
    """Sign in, walk the wizard and pay by card in the sandbox; return the session id."""
    make_user(session, "ann@example.com")
    session.commit()
    AuthActions(client).login("ann@example.com")
    sid = wizard_to_checkout(client, session, brand)
    pay(sandbox, sid)
    return sid


def _stripe_event(sandbox: Any, event_type: str) -> dict[str, Any]:
    events = sandbox.control("GET", f"/stripe/events?type={event_type}").json()["events"]
    return dict(events[-1])


@pytest.mark.prefect
def test_paid_checkout_starts_exactly_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    client = prefect_app.test_client()
    sid = _paid_checkout(client, session, portal_sandbox, "exactlyone")
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    completed = _stripe_event(portal_sandbox, "checkout.session.completed")
    body = json.dumps(completed).encode()
    assert post_event(client, body).json["outcome"] == "started"
    # The same event again, and a second event for the same session: both harmless.
    assert post_event(client, body).json["status"] == "duplicate"
    again = json.dumps(
        {**completed, "id": "evt_again_1", "type": "checkout.session.async_payment_succeeded"}
    ).encode()
    assert post_event(client, again).json["outcome"] == "already_started"
    _settled()
    fresh = session.scalars(select(Provision)).one()
    assert fresh.status == "provisioning"
    assert fresh.paid_at is not None
    new = prefect_support.run_ids(portal_prefect, PROVISION) - before
    assert new == {fresh.current_flow_run_id}
    run = prefect_support.read_run(portal_prefect, fresh.current_flow_run_id)
    assert run.parameters == {"provision_id": fresh.id}
    assert run.idempotency_key == f"checkout:{sid}"
    row = session.scalars(select(OutboxMessage).where(OutboxMessage.key == f"checkout:{sid}")).one()
    assert (row.result, row.attempts) == (fresh.current_flow_run_id, 1) and row.sent_at


@pytest.mark.prefect
def test_prefect_down_the_webhook_still_answers_and_a_later_sender_starts_one_run(
    app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """The start no longer happens in the request: Prefect down costs no 503 and no lost order."""
    client = app.test_client()  # this app has no Prefect URL: every start fails
    sid = _paid_checkout(client, session, portal_sandbox, "prefectdown")
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    body = json.dumps(_stripe_event(portal_sandbox, "checkout.session.completed")).encode()
    response = post_event(client, body)
    assert (response.status_code, response.json["outcome"]) == (200, "started")
    _settled()
    row = session.scalars(select(OutboxMessage).where(OutboxMessage.key == f"checkout:{sid}")).one()
    assert row.sent_at is None and "APP_PREFECT_API_URL" in (row.last_error or "")
    assert session.scalars(select(Provision)).one().status == "provisioning"
    # A second sender (the watchdog's, here with the portal's start) sends it once it is due.
    session.execute(OutboxMessage.__table__.update().values(next_attempt_at=row.created_at))
    session.commit()
    scope = outbox_sender.scope_of(app.extensions["portal_db"].factory)
    for _ in range(2):  # a second pass finds nothing left to send
        outbox.send_due(scope, outbox_sender.perform_with(portal_prefect))
    new = prefect_support.run_ids(portal_prefect, PROVISION) - before
    assert len(new) == 1
    session.expire_all()
    assert session.scalars(select(Provision)).one().current_flow_run_id in new


@pytest.mark.prefect
def test_stripe_unreachable_while_reading_answers_503_and_records_nothing(
    prefect_app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client = prefect_app.test_client()
    _paid_checkout(client, session, portal_sandbox, "stripedown")
    body = json.dumps(_stripe_event(portal_sandbox, "checkout.session.completed")).encode()
    settings = prefect_app.extensions["settings"]
    prefect_app.extensions["settings"] = settings.model_copy(
        update={"stripe_api_base": "http://127.0.0.1:9/stripe"}
    )
    try:
        response = post_event(client, body)
    finally:
        prefect_app.extensions["settings"] = settings
    assert response.status_code == 503
    assert _events(session) == 0
    assert session.scalars(select(Provision)).one().status == "pending_payment"
    # Stripe's retry, once Stripe answers, provisions.
    assert post_event(client, body).json["outcome"] == "started"


@pytest.mark.prefect
def test_a_rolled_back_webhook_transaction_leaves_no_outbox_row_and_no_run(
    prefect_app: Flask,
    portal_prefect: str,
    session: Session,
    portal_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 13: a run started inside the webhook's transaction outlived its rollback.

    It then found the order still pending_payment, failed silently, and Stripe's retry got that
    same failed run back from the idempotency key. Now the start happens after the commit.
    """
    client = prefect_app.test_client()
    sid = _paid_checkout(client, session, portal_sandbox, "rolledback")
    body = json.dumps(_stripe_event(portal_sandbox, "checkout.session.completed")).encode()
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    from sqlalchemy.exc import IntegrityError

    from portal.webhooks import views

    def conflict() -> Any:
        raise IntegrityError("UPDATE webhook_events", {}, Exception("injected conflict"))

    # The transaction fails after fulfilment decided to start the run (at processed_at).
    monkeypatch.setattr(views, "utcnow", conflict)
    assert post_event(client, body).status_code == 503
    _settled()
    assert session.scalars(select(OutboxMessage)).all() == []
    assert prefect_support.run_ids(portal_prefect, PROVISION) == before
    assert session.scalars(select(Provision)).one().status == "pending_payment"
    monkeypatch.undo()
    # Stripe's retry starts exactly one run, which finds the order paid.
    assert post_event(client, body).json["outcome"] == "started"
    _settled()
    new = prefect_support.run_ids(portal_prefect, PROVISION) - before
    assert len(new) == 1
    run = prefect_support.read_run(portal_prefect, new.pop())
    assert run.idempotency_key == f"checkout:{sid}"


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


@pytest.mark.prefect
@pytest.mark.postgres_only
def test_concurrent_duplicate_deliveries_start_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    _paid_checkout(prefect_app.test_client(), session, portal_sandbox, "racers")
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    completed = _stripe_event(portal_sandbox, "checkout.session.completed")
    same = json.dumps({**completed, "id": "evt_race_1"}).encode()
    other = json.dumps(
        {**completed, "id": "evt_race_2", "type": "checkout.session.async_payment_succeeded"}
    ).encode()
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
    _settled()
    assert results == [200, 200, 200, 200]
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1
    assert _events(session) == 2
    assert session.scalars(select(Provision)).one().status == "provisioning"


@pytest.mark.prefect
def test_real_sandbox_events_in_any_order_and_twice_start_one_run(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """Drive a real checkout in the sandbox, then deliver all its events shuffled and duplicated."""
    user = make_user(session, "ann@example.com")
    session.commit()
    client = signed_in(prefect_app, "ann@example.com")
    pay(portal_sandbox, wizard_to_checkout(client, session, "shuffleco"))
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
    _settled()
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1
    assert _events(session) == len(events)


@pytest.mark.prefect
def test_failed_bank_debit_then_card_payment_provisions_once(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """A delayed payment fails, the student pays again by card: one run, the new subscription."""
    user = make_user(session, "ann@example.com")
    session.commit()
    client = signed_in(prefect_app, "ann@example.com")
    feed = EventFeed(portal_sandbox)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    first = wizard_to_checkout(client, session, "bankdebit")
    pay(portal_sandbox, first, method="bank_debit")
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
    pay(portal_sandbox, second)
    feed.deliver(client)
    provision = _fresh(session, provision)
    assert provision.status == "provisioning"
    assert provision.stripe_checkout_session_id == second
    paid = portal_sandbox.control("GET", "/stripe/events?type=checkout.session.completed").json()[
        "events"
    ][-1]
    assert provision.stripe_subscription_id == paid["data"]["object"]["subscription"]
    _settled()
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


@pytest.mark.prefect
def test_bank_debit_that_clears_starts_provisioning(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    make_user(session, "ann@example.com")
    session.commit()
    client = signed_in(prefect_app, "ann@example.com")
    feed = EventFeed(portal_sandbox)
    before = prefect_support.run_ids(portal_prefect, PROVISION)
    sid = wizard_to_checkout(client, session, "slowbank")
    pay(portal_sandbox, sid, method="bank_debit")
    feed.deliver(client)
    assert prefect_support.run_ids(portal_prefect, PROVISION) == before
    portal_sandbox.control(
        "POST", f"/stripe/checkout/{sid}/async_payment", json={"outcome": "succeeded"}
    )
    outcomes = [r.json.get("outcome") for r in feed.deliver(client)]
    assert "started" in outcomes
    provision = session.scalars(select(Provision)).one()
    assert (provision.status, provision.status_reason) == ("provisioning", None)
    _settled()
    assert len(prefect_support.run_ids(portal_prefect, PROVISION) - before) == 1


@pytest.mark.parametrize(
    "event_type,obj",
    [
        # The handlers read the object from Stripe by its id: only the id must be usable.
        ("customer.subscription.updated", {"object": "subscription", "status": "canceled"}),
        ("customer.subscription.deleted", {"id": None, "status": "canceled"}),
        ("invoice.paid", {"id": 5, "billing_reason": "subscription_cycle"}),
        ("invoice.payment_failed", {"id": ["in_1"], "status": "open"}),
    ],
    ids=["no-id", "null-id", "id-not-a-string", "id-a-list"],
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


def _charge_of(sandbox: Any, sid: str) -> dict[str, Any]:
    """The charge that paid a sandbox checkout."""
    intent = None
    for e in sandbox.control("GET", "/stripe/events").json()["events"]:
        if e["type"] == "charge.succeeded":
            intent = e["data"]["object"]
    assert intent is not None, f"no charge for {sid}"
    return dict(intent)


def _delivered_order(
    app: Flask, session: Session, sandbox: Any, brand: str
) -> tuple[Any, EventFeed, Provision, dict[str, Any]]:
    """A paid checkout the portal has heard of: its client, event feed, order and charge."""
    client = app.test_client()
    feed = EventFeed(sandbox)
    sid = _paid_checkout(client, session, sandbox, brand)
    feed.deliver(client)
    provision = session.scalars(select(Provision)).one()
    return client, feed, provision, _charge_of(sandbox, sid)


def _refund(
    sandbox: Any, charge_id: str, amount: int | None = None, metadata: dict[str, str] | None = None
) -> None:
    params = {"charge": charge_id, **({"amount": str(amount)} if amount else {})}
    params.update({f"metadata[{key}]": value for key, value in (metadata or {}).items()})
    httpx.post(
        f"{sandbox.stripe_url}/v1/refunds",
        data=params,
        headers={"Authorization": "Bearer sk_test_sandbox"},
    ).raise_for_status()


@pytest.mark.prefect
def test_full_refund_cancels_the_order_partial_refund_is_only_recorded(
    prefect_app: Flask, portal_prefect: str, session: Session, portal_sandbox: Any
) -> None:
    """Issue 13: charge.refunded was ignored, so a refunded order kept its vendor resources."""
    client, feed, provision, charge = _delivered_order(
        prefect_app, session, portal_sandbox, "refunded"
    )
    assert provision.status == "provisioning"
    _refund(portal_sandbox, charge["id"], 1000)
    outcomes = [r.json.get("outcome") for r in feed.deliver(client)]
    assert "partial_refund_recorded" in outcomes
    assert _fresh(session, provision).status == "provisioning"
    _refund(portal_sandbox, charge["id"])
    outcomes = [r.json.get("outcome") for r in feed.deliver(client)]
    assert any(str(o).startswith("cancelled") for o in outcomes), outcomes
    _settled()
    fresh = _fresh(session, provision)
    assert fresh.status == "cancelled" and "refunded" in (fresh.status_reason or "")
    before = prefect_support.run_ids(portal_prefect, CANCEL)
    cancel_row = session.scalars(
        select(OutboxMessage).where(OutboxMessage.key == f"cancel:{provision.id}:1")
    ).one()
    assert cancel_row.result in before
    told = session.scalars(select(Notification)).all()
    assert [n.recipient for n in told] == ["ann@example.com"]


@pytest.mark.prefect
def test_a_refund_the_refund_order_flow_made_never_cancels_the_order(
    prefect_app: Flask, session: Session, portal_sandbox: Any
) -> None:
    """A losing session's refund (kind order_not_fulfilled) is not the live order's money.

    The refund-order flow refunds payments of sessions that lost (second tab, changed order);
    such a charge can share the student's customer, and its charge.refunded must not cancel
    the order that won.
    """
    client, feed, provision, charge = _delivered_order(
        prefect_app, session, portal_sandbox, "loser-refund"
    )
    _refund(portal_sandbox, charge["id"], metadata={"kind": "order_not_fulfilled", "order_id": "9"})
    outcomes = [r.json.get("outcome") for r in feed.deliver(client)]
    assert "unfulfilled_order_refund_recorded" in outcomes, outcomes
    assert _fresh(session, provision).status == "provisioning"


@pytest.mark.prefect
def test_lost_dispute_cancels_the_order_an_open_one_is_recorded(
    prefect_app: Flask, session: Session, portal_sandbox: Any
) -> None:
    """Disputes come from the bank through Stripe; the dispute is read from Stripe, not the body."""
    client, feed, provision, charge = _delivered_order(
        prefect_app, session, portal_sandbox, "disputed"
    )

    dispute = portal_sandbox.control("POST", f"/stripe/charges/{charge['id']}/dispute", json={})
    assert dispute.status_code == 200, dispute.text
    outcomes = {r.json["outcome"] for r in feed.deliver(client)}
    assert "dispute_recorded" in outcomes
    # A forged "closed: lost" body, correctly signed, while Stripe says the dispute is open.
    forged = {**dispute.json(), "status": "lost"}
    assert post_event(client, event("charge.dispute.closed", forged)).json["outcome"] == (
        "dispute_needs_response_recorded"
    )
    assert _fresh(session, provision).status == "provisioning"

    closed = portal_sandbox.control(
        "POST", f"/stripe/disputes/{dispute.json()['id']}/close", json={"outcome": "lost"}
    )
    assert closed.status_code == 200, closed.text
    outcomes = [r.json["outcome"] for r in feed.deliver(client)]
    assert any(str(o).startswith("cancelled") for o in outcomes), outcomes
    assert _fresh(session, provision).status == "cancelled"
    # A dispute Stripe does not know changes nothing.
    ghost = {**forged, "id": "dp_nobody"}
    assert post_event(client, event("charge.dispute.closed", ghost)).json["outcome"] == (
        "unknown_dispute"
    )


@pytest.mark.prefect
def test_a_won_dispute_keeps_the_order(
    prefect_app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client, feed, provision, charge = _delivered_order(
        prefect_app, session, portal_sandbox, "disputewon"
    )
    dispute = portal_sandbox.control("POST", f"/stripe/charges/{charge['id']}/dispute", json={})
    portal_sandbox.control(
        "POST", f"/stripe/disputes/{dispute.json()['id']}/close", json={"outcome": "won"}
    )
    outcomes = [r.json["outcome"] for r in feed.deliver(client)]
    assert "dispute_won_recorded" in outcomes, outcomes
    assert _fresh(session, provision).status == "provisioning"
