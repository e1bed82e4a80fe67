"""Stripe simulator over real HTTP, driven by the official stripe SDK (v1 namespace)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import HTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode

from sandbox.testing import SandboxHandle
from sandbox.vendors.stripe.forms import parse_qs
from sandbox.vendors.stripe.periods import add_interval
from sandbox.vendors.stripe.periods import remaining_fraction

KEY = "sk_test_sandbox"
WHSEC = "whsec_sandbox"
FIRST_INVOICE_EVENTS = {
    "customer.created",
    "checkout.session.completed",
    "customer.subscription.created",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
}


class Receiver:
    """A webhook endpoint on a free loopback port; answers 500 to the first `fail_first` posts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), body))
                failing = len(receiver.posts) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where the sandbox should POST events."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/stripe/webhook"

    def events(self) -> list[dict[str, Any]]:
        """Every delivered body, parsed."""
        return [json.loads(body) for _, body in self.posts]

    def close(self) -> None:
        """Stop serving and release the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def client(sim: SandboxHandle) -> Iterator[stripe.StripeClient]:
    """The official SDK pointed at the sandbox, as the portal builds it."""
    http = stripe.RequestsClient(timeout=10)
    yield stripe.StripeClient(
        KEY, base_addresses={"api": sim.stripe_url}, max_network_retries=0, http_client=http
    )
    http.close()


@pytest.fixture
def web() -> Iterator[httpx.Client]:
    """A browser stand-in for the hosted pages."""
    with httpx.Client(timeout=10) as http:
        yield http


@pytest.fixture
def receiver(sim: SandboxHandle) -> Iterator[Receiver]:
    """A webhook receiver the sandbox delivers to."""
    rec = Receiver()
    sim.configure(stripe_webhook_url=rec.url, stripe_webhook_retry_base_s=0.05)
    yield rec
    sim.configure(stripe_webhook_url=None)
    rec.close()


@pytest.fixture
def catalog(client: stripe.StripeClient) -> dict[str, Any]:
    """A product with a one-time setup fee, a monthly plan and a pricier monthly plan."""
    product = client.v1.products.create({"name": "Outbound Starter"})
    pro = client.v1.products.create({"name": "Outbound Pro"})
    return {
        "setup": client.v1.prices.create(
            {"product": product.id, "unit_amount": 9900, "currency": "usd"}
        ),
        "monthly": client.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": 2900,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        ),
        "pro": client.v1.prices.create(
            {
                "product": pro.id,
                "unit_amount": 7900,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        ),
        "upgrade_fee": client.v1.prices.create(
            {"product": pro.id, "unit_amount": 5000, "currency": "usd"}
        ),
    }


def new_session(client: stripe.StripeClient, catalog: dict[str, Any], **extra: Any):
    """A subscription-mode session: monthly plan plus one-time setup fee."""
    params = {
        "mode": "subscription",
        "line_items": [
            {"price": catalog["monthly"].id, "quantity": 1},
            {"price": catalog["setup"].id, "quantity": 1},
        ],
        "success_url": "http://portal.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://portal.test/billing/cancel",
        "client_reference_id": "order_7",
        "metadata": {"order_id": "7"},
        "subscription_data": {"metadata": {"provision_id": "7"}},
        "customer_email": "ada@example.com",
        **extra,
    }
    return client.v1.checkout.sessions.create(params)


def pay(web: httpx.Client, session: Any, action: str = "card") -> httpx.Response:
    """Press a button on the hosted Checkout page."""
    return web.post(f"{session.url}/pay", data={"action": action, "email": "ada@example.com"})


def subscribed(client, catalog, web) -> tuple[Any, Any]:
    """Run a paid checkout; return (session, subscription)."""
    session = new_session(client, catalog)
    assert pay(web, session).status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    return session, client.v1.subscriptions.retrieve(session.subscription)


def drain(sim: SandboxHandle) -> None:
    """Wait until every queued webhook delivery (retries included) is done."""
    response = sim.control("POST", "/stripe/drain", json={"timeout_s": 10})
    assert response.json()["drained"], response.text


def events_of(client: stripe.StripeClient, type_: str) -> list[Any]:
    """Events of one type, newest first."""
    return list(client.v1.events.list({"type": type_, "limit": 100}).data)


def test_api_key_is_required(sim: SandboxHandle) -> None:
    http = stripe.RequestsClient(timeout=10)
    bad = stripe.StripeClient(
        "sk_test_wrong", base_addresses={"api": sim.stripe_url}, http_client=http
    )
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.customers.list()
    http.close()
    response = httpx.get(f"{sim.stripe_url}/v1/customers", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_products_and_prices(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "Plan", "metadata": {"tier": "1"}})
    once = client.v1.prices.create({"product": product.id, "unit_amount": 500, "currency": "USD"})
    monthly = client.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": 2900,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    assert (once.type, once.currency, once.recurring) == ("one_time", "usd", None)
    assert (monthly.type, monthly.recurring.interval) == ("recurring", "month")
    assert monthly.id.startswith("price_") and product.id.startswith("prod_")
    listed = client.v1.prices.list({"product": product.id, "type": "recurring"})
    assert [p.id for p in listed.data] == [monthly.id]
    assert client.v1.prices.update(monthly.id, {"nickname": "Monthly"}).nickname == "Monthly"
    with pytest.raises(stripe.InvalidRequestError) as immutable:
        client.v1.prices.update(monthly.id, {"unit_amount": 100})
    assert immutable.value.param == "unit_amount"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.prices.create({"product": product.id, "unit_amount": 1})
    assert missing.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.prices.retrieve("price_nope")
    assert unknown.value.code == "resource_missing"


def test_checkout_session_shape(client, catalog) -> None:
    session = new_session(client, catalog)
    assert session.id.startswith("cs_test_")
    assert session.url.endswith(f"/stripe/checkout/{session.id}")
    assert (session.status, session.payment_status, session.mode) == (
        "open",
        "unpaid",
        "subscription",
    )
    assert session.amount_total == 12800 and session.currency == "usd"
    assert session.success_url.endswith(f"session_id={session.id}")
    assert session.client_reference_id == "order_7" and session.metadata.order_id == "7"
    assert "line_items" not in session
    expanded = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["line_items"]})
    assert sorted(li.amount_total for li in expanded.line_items.data) == [2900, 9900]


def test_checkout_validates_line_items(client, catalog) -> None:
    with pytest.raises(stripe.InvalidRequestError) as no_recurring:
        client.v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "line_items": [{"price": catalog["setup"].id, "quantity": 1}],
                "success_url": "http://portal.test/ok",
            }
        )
    assert no_recurring.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as recurring_in_payment:
        client.v1.checkout.sessions.create(
            {"mode": "payment", "line_items": [{"price": catalog["monthly"].id, "quantity": 1}]}
        )
    assert recurring_in_payment.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as no_quantity:
        client.v1.checkout.sessions.create(
            {"mode": "subscription", "line_items": [{"price": catalog["monthly"].id}]}
        )
    assert no_quantity.value.param == "line_items[0][quantity]"


def test_hosted_page_pay_creates_paid_subscription(sim, client, catalog, web) -> None:
    session = new_session(client, catalog)
    page = web.get(session.url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "$99.00" in page.text and "$29.00" in page.text and "$128.00" in page.text

    redirect = pay(web, session)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == (
        f"http://portal.test/billing/success?session_id={session.id}"
    )
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.customer.startswith("cus_") and done.customer_details.email == "ada@example.com"

    sub = client.v1.subscriptions.retrieve(done.subscription, {"expand": ["latest_invoice"]})
    item = sub.items.data[0]
    assert (sub.status, sub.customer) == ("active", done.customer)
    assert sub.billing_mode.type == "flexible"
    assert item.id.startswith("si_") and item.price.id == catalog["monthly"].id
    assert item.current_period_end == add_interval(item.current_period_start, "month")
    assert sub.metadata.provision_id == "7" and sub.cancel_at_period_end is False

    invoice = sub.latest_invoice
    assert invoice.id == done.invoice
    assert (invoice.status, invoice.billing_reason) == ("paid", "subscription_create")
    assert invoice.amount_paid == invoice.total == 12800
    assert sorted(line.amount for line in invoice.lines.data) == [2900, 9900]
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.parent.subscription_details.metadata.provision_id == "7"
    intent_id = invoice.payments.data[0].payment.payment_intent
    assert client.v1.payment_intents.retrieve(intent_id).status == "succeeded"
    payments = sim.ledger(vendor="stripe", kind="payment")
    assert [(p["item"], p["amount"]) for p in payments] == [(invoice.id, "12800")]

    # The setup fee is on the first invoice only: the renewal bills the plan alone.
    renewal = sim.control("POST", f"/stripe/subscriptions/{sub.id}/advance", json={}).json()
    assert renewal["invoice"]["total"] == 2900
    assert renewal["invoice"]["billing_reason"] == "subscription_cycle"
    assert renewal["invoice"]["status"] == "paid"
    assert len(sim.ledger(vendor="stripe", kind="payment")) == 2


def test_decline_keeps_session_open_and_creates_nothing(sim, client, catalog, web) -> None:
    session = new_session(client, catalog)
    response = pay(web, session, "decline")
    assert response.status_code == 200 and "Your card was declined." in response.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.customers.list().data == []
    assert client.v1.subscriptions.list().data == []
    assert sim.ledger(vendor="stripe") == []


def test_idempotency_replays_and_rejects_changed_params(client: stripe.StripeClient) -> None:
    first = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus-1"})
    again = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus-1"})
    assert again.id == first.id
    assert len(client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "cus-1"})


def test_webhooks_are_signed_like_stripe(sim, client, catalog, web, receiver) -> None:
    session, sub = subscribed(client, catalog, web)
    drain(sim)
    assert receiver.posts
    types = set()
    for headers, body in receiver.posts:
        event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WHSEC)
        assert event.api_version == "2026-10-28.endive" and event.livemode is False
        assert headers["User-Agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
        types.add(event.type)
    assert FIRST_INVOICE_EVENTS <= types
    completed = next(e for e in receiver.events() if e["type"] == "checkout.session.completed")
    assert completed["data"]["object"]["subscription"] == sub.id
    assert client.construct_event(*_first(receiver), WHSEC).id.startswith("evt_")
    headers, body = receiver.posts[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", headers["Stripe-Signature"], WHSEC)


def _first(receiver: Receiver) -> tuple[bytes, str]:
    headers, body = receiver.posts[0]
    return body, headers["Stripe-Signature"]


def test_failed_deliveries_are_retried(sim, client, receiver) -> None:
    receiver.fail_first = 2
    customer = client.v1.customers.create({"email": "retry@example.com"})
    drain(sim)
    log = sim.control("GET", "/stripe/deliveries").json()["deliveries"]
    mine = [row for row in log if row["type"] == "customer.created"]
    assert [(row["attempt"], row["status"]) for row in mine] == [(1, 500), (2, 500), (3, 200)]
    assert [e["data"]["object"]["id"] for e in receiver.events()] == [customer.id] * 3
    assert client.v1.events.retrieve(mine[0]["event_id"]).pending_webhooks == 0
    assert sim.control("GET", "/stripe/deliveries", params={"pending": "true"}).json() == {
        "pending": 0
    }
    sim.control("POST", "/stripe/redeliver", json={"event_id": mine[0]["event_id"]})
    drain(sim)
    again = sim.control("GET", "/stripe/deliveries", params={"event_id": mine[0]["event_id"]})
    assert [row["manual"] for row in again.json()["deliveries"]] == [False, False, False, True]


def test_duplicate_and_shuffle_modes(sim, client, receiver) -> None:
    sim.configure(stripe_webhook_duplicate_rate=1.0, stripe_webhook_shuffle=True)
    for i in range(12):
        client.v1.customers.create({"email": f"c{i}@example.com"})
    drain(sim)
    emitted = [e.id for e in reversed(client.v1.events.list({"limit": 100}).data)]
    received = [e["id"] for e in receiver.events()]
    assert sorted(received) == sorted(emitted * 2)
    assert received[::2] != emitted  # reordered, not just doubled
    log = sim.control("GET", "/stripe/deliveries").json()["deliveries"]
    assert sum(row["duplicate"] for row in log) == 12


def test_upgrade_with_always_invoice(sim, client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    item = sub.items.data[0]
    start, end = item.current_period_start, item.current_period_end
    halfway = start + (end - start) // 2
    updated = client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item.id, "price": catalog["pro"].id}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "proration_date": halfway,
            "add_invoice_items": [{"price": catalog["upgrade_fee"].id}],
        },
    )
    assert updated.items.data[0].id == item.id
    assert updated.items.data[0].price.id == catalog["pro"].id
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    fraction = remaining_fraction(start, end, halfway)
    credit, charge = -round(2900 * fraction), round(7900 * fraction)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    assert sorted(line.amount for line in invoice.lines.data) == [credit, charge]
    assert invoice.amount_paid == credit + charge
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)

    event = events_of(client, "customer.subscription.updated")[0]
    previous = event.data.previous_attributes.to_dict()
    assert previous["items"]["data"][0]["price"]["id"] == catalog["monthly"].id
    # Flexible billing mode: the one-time fee waits for the next regular invoice.
    pending = client.v1.invoice_items.list({"customer": sub.customer, "pending": True}).data
    assert [ii.amount for ii in pending] == [5000]
    renewal = sim.control("POST", f"/stripe/subscriptions/{sub.id}/advance", json={}).json()
    assert renewal["invoice"]["total"] == 7900 + 5000


def test_declined_upgrade_stays_pending_until_paid(sim, client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    item = sub.items.data[0]
    sim.control("POST", "/stripe/fail_next_payment", json={"customer": sub.customer})
    pending = client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item.id, "price": catalog["pro"].id}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
    )
    assert pending.items.data[0].price.id == catalog["monthly"].id
    assert pending.pending_update.subscription_items[0].price.id == catalog["pro"].id
    invoice = client.v1.invoices.retrieve(pending.latest_invoice)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert pending.status == "active"

    assert client.v1.invoices.pay(invoice.id).status == "paid"
    applied = client.v1.subscriptions.retrieve(sub.id)
    assert applied.pending_update is None
    assert applied.items.data[0].price.id == catalog["pro"].id


def test_webhook_endpoint_api_has_its_own_secret(sim, client) -> None:
    rec = Receiver()
    try:
        endpoint = client.v1.webhook_endpoints.create(
            {"url": rec.url, "enabled_events": ["customer.*"]}
        )
        assert endpoint.secret.startswith("whsec_")
        client.v1.products.create({"name": "not delivered"})
        client.v1.customers.create({"email": "hook@example.com"})
        drain(sim)
        assert [e["type"] for e in rec.events()] == ["customer.created"]
        headers, body = rec.posts[0]
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], endpoint.secret)
    finally:
        rec.close()


def test_payment_mode_checkout(sim, client, catalog, web) -> None:
    session = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [{"price": catalog["upgrade_fee"].id, "quantity": 2}],
            "success_url": "http://portal.test/paid",
        }
    )
    assert pay(web, session).headers["location"] == "http://portal.test/paid"
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.payment_status, done.subscription, done.customer) == ("paid", None, None)
    intent = client.v1.payment_intents.retrieve(done.payment_intent)
    assert (intent.status, intent.amount) == ("succeeded", 10000)
    assert sim.ledger(vendor="stripe", kind="payment")[0]["item"] == intent.id


def test_one_off_fee_as_a_separate_invoice(sim, client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    invoice = client.v1.invoices.create({"customer": sub.customer, "auto_advance": False})
    client.v1.invoice_items.create(
        {
            "customer": sub.customer,
            "invoice": invoice.id,
            "pricing": {"price": catalog["upgrade_fee"].id},
        }
    )
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert (finalized.status, finalized.amount_due, finalized.parent) == ("open", 5000, None)
    paid = client.v1.invoices.pay(invoice.id, {}, {"idempotency_key": f"fee:{invoice.id}"})
    assert paid.status == "paid"
    assert sim.ledger(vendor="stripe", kind="payment")[-1]["item"] == invoice.id
    assert events_of(client, "invoice.paid")[0].data.object.id == invoice.id


def test_billing_cycle_anchor_must_be_an_object(client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    with pytest.raises(stripe.InvalidRequestError) as old_form:
        client.v1.subscriptions.update(sub.id, {"billing_cycle_anchor": "now"})
    assert old_form.value.param == "billing_cycle_anchor"
    kept = client.v1.subscriptions.update(sub.id, {"billing_cycle_anchor": {"type": "unchanged"}})
    assert kept.billing_cycle_anchor == sub.billing_cycle_anchor


def test_cancel_and_failed_renewal(sim, client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    failed = sim.control(
        "POST", f"/stripe/subscriptions/{sub.id}/advance", json={"fail": True}
    ).json()
    assert failed["subscription"]["status"] == "past_due"
    assert failed["invoice"]["attempt_count"] == 1
    assert events_of(client, "invoice.payment_failed")[0].data.object.id == failed["invoice"]["id"]
    assert client.v1.invoices.pay(failed["invoice"]["id"]).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.ended_at is not None
    assert events_of(client, "customer.subscription.deleted")[0].data.object.id == sub.id
    assert client.v1.subscriptions.list({"customer": sub.customer}).data == []


def test_refunds_partial_then_too_much(sim, client, catalog, web) -> None:
    session, _ = subscribed(client, catalog, web)
    invoice = client.v1.invoices.retrieve(session.invoice)
    intent = invoice.payments.data[0].payment.payment_intent
    refund = client.v1.refunds.create({"payment_intent": intent, "amount": 9900})
    assert refund.id.startswith("re_") and refund.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"payment_intent": intent, "amount": 3000})
    assert too_much.value.param == "amount"
    assert [r["amount"] for r in sim.ledger(vendor="stripe", kind="refund")] == ["9900"]
    refunded = events_of(client, "charge.refunded")[0].data
    assert refunded.object.amount_refunded == 9900
    assert refunded.previous_attributes.amount_refunded == 0


def test_billing_portal_cancels(client, catalog, web) -> None:
    _, sub = subscribed(client, catalog, web)
    portal = client.v1.billing_portal.sessions.create(
        {"customer": sub.customer, "return_url": "http://portal.test/account"}
    )
    assert portal.id.startswith("bps_") and portal.url.endswith(f"/stripe/billing/{portal.id}")
    page = web.get(portal.url)
    assert "Outbound Starter" in page.text and "http://portal.test/account" in page.text
    later = web.post(f"{portal.url}/subscriptions/{sub.id}/cancel_at_period_end")
    assert later.status_code == 303
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    assert events_of(client, "customer.subscription.updated")[0].data.object.cancel_at_period_end
    web.post(f"{portal.url}/subscriptions/{sub.id}/cancel_now")
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert events_of(client, "customer.subscription.deleted")


def test_bank_debit_completes_unpaid_then_succeeds(sim, client, catalog, web) -> None:
    session = new_session(client, catalog)
    assert pay(web, session, "bank_debit").status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "unpaid")
    assert client.v1.subscriptions.retrieve(done.subscription).status == "incomplete"
    assert sim.ledger(vendor="stripe") == []
    settled = sim.control(
        "POST", f"/stripe/checkout/{session.id}/async_payment", json={"outcome": "succeeded"}
    )
    assert settled.json()["payment_status"] == "paid"
    assert events_of(client, "checkout.session.async_payment_succeeded")
    assert client.v1.subscriptions.retrieve(done.subscription).status == "active"
    assert len(sim.ledger(vendor="stripe", kind="payment")) == 1


def test_expire_session(client, catalog, web) -> None:
    session = new_session(client, catalog)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    assert events_of(client, "checkout.session.expired")[0].data.object.id == session.id
    assert "This Checkout Session has expired." in web.get(session.url).text


values = st.text(alphabet="abc xyz-_.:/{}@", min_size=0, max_size=6)
keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
params = st.recursive(
    values,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(keys, inner, min_size=1, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(keys, params, min_size=1, max_size=4))
def test_form_decoder_inverts_the_sdk_encoder(data: dict[str, Any]) -> None:
    encoded = urlencode(list(_api_encode(data))).replace("%5B", "[").replace("%5D", "]")
    assert parse_qs(encoded) == data


def test_form_decoder_handles_append_brackets() -> None:
    assert parse_qs("expand[]=a&expand[]=b&m[k]=v") == {"expand": ["a", "b"], "m": {"k": "v"}}


def test_month_arithmetic_clamps_to_month_end() -> None:
    jan31 = 1769817600  # 2026-01-31T00:00:00Z
    assert add_interval(jan31, "month") == 1772236800  # 2026-02-28
    assert remaining_fraction(0, 100, 150) == 0.0 and remaining_fraction(0, 100, -5) == 1.0
    assert time.gmtime(add_interval(jan31, "year")).tm_year == 2027


def test_a_dispute_opens_on_a_paid_charge_and_closes_once(sim, client, catalog, web) -> None:
    session = new_session(client, catalog)
    pay(web, session)
    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["invoice"]})
    intent_id = done.invoice.payments.data[0].payment.payment_intent
    charge_id = client.v1.payment_intents.retrieve(intent_id).latest_charge
    refused = sim.control("POST", "/stripe/charges/ch_nobody/dispute", json={})
    assert refused.status_code == 400

    opened = sim.control("POST", f"/stripe/charges/{charge_id}/dispute", json={}).json()
    assert (opened["status"], opened["charge"]) == ("needs_response", charge_id)
    assert client.v1.charges.retrieve(charge_id).disputed is True
    bad = sim.control("POST", f"/stripe/disputes/{opened['id']}/close", json={"outcome": "x"})
    assert bad.status_code == 400
    sim.control("POST", f"/stripe/disputes/{opened['id']}/close", json={"outcome": "lost"})
    assert client.v1.disputes.retrieve(opened["id"]).status == "lost"
    again = sim.control("POST", f"/stripe/disputes/{opened['id']}/close", json={"outcome": "won"})
    assert again.status_code == 400
    assert [e["item"] for e in sim.ledger(vendor="stripe", kind="dispute_lost")] == [opened["id"]]
    kinds = [e["type"] for e in sim.control("GET", "/stripe/events").json()["events"]]
    assert kinds.count("charge.dispute.created") == kinds.count("charge.dispute.closed") == 1
