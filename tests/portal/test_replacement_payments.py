"""A charged replacement against the sandbox's Stripe: paid once, started once; a decline waits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import DomainReplacement
from core.models import OutboxMessage
from core.models import Provision
from tests.factories import make_user
from tests.portal.helpers import paid_order
from tests.portal.helpers import signed_in
from tests.portal.replacement_support import STRIPE_AUTH
from tests.portal.replacement_support import confirm
from tests.portal.replacement_support import first_domain
from tests.portal.replacement_support import free_name
from tests.portal.replacement_support import pick
from tests.portal.replacement_support import replacement_id


@pytest.fixture
def paying(app: Flask, session: Session, portal_sandbox: Any) -> tuple[Any, Provision, Domain]:
    """A student who paid Starter by card in the sandbox, set up, with no included replacement
    left in their package and a domain their instructor marked burned."""
    make_user(session, "ann@example.com")
    session.commit()
    client = signed_in(app, "ann@example.com")
    paid_order(client, session, portal_sandbox, "swapco")
    provision = session.scalars(select(Provision)).one()
    assert provision.stripe_customer_id
    # What the provisioning flow would have done.
    provision.status, provision.activated_at = "active", utcnow()
    for domain in provision.domains:
        domain.purchase_state, domain.status = "purchased", "ACTIVE"
    provision.tier.replacements_included = 0
    domain = first_domain(session, provision)
    domain.burned_at = utcnow()
    session.commit()
    return client, provision, domain


def _stripe(sandbox: Any, path: str, **params: Any) -> Any:
    return httpx.get(f"{sandbox.stripe_url}/v1/{path}", headers=STRIPE_AUTH, params=params).json()


def _replacement_invoices(sandbox: Any, customer: str) -> list[dict[str, Any]]:
    invoices = _stripe(sandbox, "invoices", customer=customer, limit=100)["data"]
    return [i for i in invoices if i["metadata"].get("kind") == "replacement"]


def _row(session: Session) -> DomainReplacement:
    session.expire_all()
    return session.scalars(select(DomainReplacement)).one()


def _runs(session: Session) -> list[str]:
    return list(
        session.scalars(select(OutboxMessage.key).where(OutboxMessage.key.like("replacement:%")))
    )


def test_a_charged_replacement_is_paid_and_started_exactly_once_however_often_it_is_posted(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, provision, domain = paying
    page = client.get(f"/dashboard/domains/{domain.id}/replace").get_data(as_text=True)
    assert "This replacement costs $29, charged to your card on file." in page
    name = free_name("paidswap")
    pick(client, domain.id, name)
    review = client.get(f"/dashboard/domains/{domain.id}/replace/confirm").get_data(as_text=True)
    assert "Pay $29 and replace" in review
    response = confirm(client, domain.id, name)
    rid = replacement_id(response.headers["Location"])
    row = _row(session)
    assert (row.id, row.status, row.payment, row.fee_cents) == (
        rid,
        "provisioning",
        "charged",
        2900,
    )
    assert row.paid_at is not None and row.stripe_invoice_id
    invoice = _stripe(portal_sandbox, f"invoices/{row.stripe_invoice_id}")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 2900)
    assert invoice["metadata"] == {
        "kind": "replacement",
        "replacement_id": str(rid),
        "provision_id": str(provision.id),
    }
    assert _runs(session) == [f"replacement:{rid}"]

    # The same confirmation again (a double click, a reload), then "try again": nothing new.
    assert confirm(client, domain.id, name).headers["Location"] == f"/dashboard/replacements/{rid}"
    again = client.post(f"/dashboard/replacements/{rid}/pay", follow_redirects=True)
    assert "This replacement has nothing left to pay." in again.get_data(as_text=True)
    assert _runs(session) == [f"replacement:{rid}"]
    paid = _replacement_invoices(portal_sandbox, provision.stripe_customer_id)
    assert [(i["id"], i["amount_paid"]) for i in paid] == [(row.stripe_invoice_id, 2900)]
    progress = client.get(f"/dashboard/replacements/{rid}").get_data(as_text=True)
    assert "$29, paid" in progress and "Try the payment again" not in progress


def test_a_declined_card_leaves_it_pending_with_the_reason_and_a_retry(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, provision, domain = paying
    name = free_name("declinedswap")
    pick(client, domain.id, name)
    portal_sandbox.control("POST", "/stripe/fail_next_payment", json={"count": 1})
    page = confirm(client, domain.id, name, follow_redirects=True).get_data(as_text=True)
    assert "Your card was declined." in page and "Try the payment again" in page
    assert "Waiting for the replacement&#39;s payment." in page
    row = _row(session)
    assert (row.status, row.paid_at) == ("pending_payment", None)
    assert row.status_reason and "declined" in row.status_reason
    assert row.stripe_invoice_id  # kept: the retry pays this same invoice
    assert _runs(session) == []
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert f"Replacement of {domain.name} by {name}: awaiting payment of $29." in dashboard
    # Nothing is bought for an unpaid replacement: its domain has no card yet.
    assert f'<h3 title="{name}">' not in dashboard

    # Not while the account is past due: nothing is charged for an order that may not receive it.
    provision.status = "past_due"
    session.commit()
    refused = client.post(f"/dashboard/replacements/{row.id}/pay", follow_redirects=True)
    assert "A replacement can be paid only while your account is active." in refused.get_data(
        as_text=True
    )
    invoice = _stripe(portal_sandbox, f"invoices/{row.stripe_invoice_id}")
    assert (invoice["status"], invoice["amount_paid"]) == ("open", 0)
    provision.status = "active"
    session.commit()

    retried = client.post(f"/dashboard/replacements/{row.id}/pay", follow_redirects=True)
    assert "Paid: your new domain is being set up." in retried.get_data(as_text=True)
    row = _row(session)
    assert (row.status, row.status_reason) == ("provisioning", None)
    assert _runs(session) == [f"replacement:{row.id}"]
    paid = _replacement_invoices(portal_sandbox, provision.stripe_customer_id)
    assert [(i["id"], i["status"]) for i in paid] == [(row.stripe_invoice_id, "paid")]


def test_an_invoice_paid_while_the_page_never_heard_back_starts_the_run_once(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, _provision, domain = paying
    name = free_name("lostswap")
    pick(client, domain.id, name)
    portal_sandbox.control("POST", "/stripe/fail_next_payment", json={"count": 1})
    confirm(client, domain.id, name)
    row = _row(session)
    # Paid at Stripe by another way (the card updated in Billing, Stripe's own retry).
    answer = httpx.post(
        f"{portal_sandbox.stripe_url}/v1/invoices/{row.stripe_invoice_id}/pay", headers=STRIPE_AUTH
    )
    assert answer.json()["status"] == "paid"
    for _ in range(2):
        client.post(f"/dashboard/replacements/{row.id}/pay")
    row = _row(session)
    assert row.status == "provisioning"
    assert _runs(session) == [f"replacement:{row.id}"]
    invoice = _stripe(portal_sandbox, f"invoices/{row.stripe_invoice_id}")
    assert invoice["amount_paid"] == 2900


def test_an_invoice_for_another_amount_is_never_paid(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, provision, domain = paying
    name = free_name("oddswap")
    pick(client, domain.id, name)
    portal_sandbox.control("POST", "/stripe/fail_next_payment", json={"count": 1})
    confirm(client, domain.id, name)
    row = _row(session)
    # The recorded invoice bills something else (an operator's manual edit, say).
    stripe = portal_sandbox.stripe_url
    other = httpx.post(
        f"{stripe}/v1/invoices",
        headers=STRIPE_AUTH,
        data={"customer": provision.stripe_customer_id},
    ).json()
    httpx.post(
        f"{stripe}/v1/invoiceitems",
        headers=STRIPE_AUTH,
        data={
            "customer": provision.stripe_customer_id,
            "invoice": other["id"],
            "amount": 100,
            "currency": "usd",
        },
    ).raise_for_status()
    row.stripe_invoice_id = other["id"]
    session.commit()
    page = client.post(f"/dashboard/replacements/{row.id}/pay", follow_redirects=True)
    assert "Nothing was charged: this payment needs your instructor" in page.get_data(as_text=True)
    assert _stripe(portal_sandbox, f"invoices/{other['id']}")["status"] == "draft"
    row = _row(session)
    assert (row.status, row.paid_at) == ("pending_payment", None)
    assert _runs(session) == []


def _declined(client: Any, session: Session, sandbox: Any, domain: Domain, stem: str) -> Any:
    name = free_name(stem)
    pick(client, domain.id, name)
    sandbox.control("POST", "/stripe/fail_next_payment", json={"count": 1})
    confirm(client, domain.id, name)
    row = _row(session)
    assert row.status == "pending_payment" and row.stripe_invoice_id
    return row


def test_an_unpaid_request_can_be_withdrawn_its_invoice_voided_and_the_domain_replaced_again(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, provision, domain = paying
    row = _declined(client, session, portal_sandbox, domain, "withdrawn")
    invoice_id, new_name = row.stripe_invoice_id, row.new_domain.name
    page = client.get(f"/dashboard/replacements/{row.id}").get_data(as_text=True)
    assert "Withdraw this request" in page

    answer = client.post(f"/dashboard/replacements/{row.id}/withdraw", follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert f"Request withdrawn: {domain.name} stays as it is and nothing was charged." in text
    session.expire_all()
    assert session.scalars(select(DomainReplacement)).all() == []
    assert session.scalar(select(Domain).where(Domain.name == new_name)) is None
    invoice = _stripe(portal_sandbox, f"invoices/{invoice_id}")
    assert (invoice["status"], invoice["amount_paid"]) == ("void", 0)
    # A void invoice can never be paid, by us or anyone.
    paid = httpx.post(
        f"{portal_sandbox.stripe_url}/v1/invoices/{invoice_id}/pay", headers=STRIPE_AUTH
    )
    assert paid.status_code == 400
    # The burned domain can be replaced again, on a new invoice.
    name = free_name("againswap")
    pick(client, domain.id, name)
    confirm(client, domain.id, name)
    again = _row(session)
    assert (again.status, again.new_domain.name) == ("provisioning", name)
    assert again.stripe_invoice_id not in (None, invoice_id)


def test_a_payment_that_wins_the_race_with_a_withdrawal_goes_ahead(
    paying: tuple[Any, Provision, Domain], session: Session, portal_sandbox: Any
) -> None:
    client, _provision, domain = paying
    row = _declined(client, session, portal_sandbox, domain, "racedswap")
    # Paid in another tab (or by the operator) before the withdrawal reached Stripe.
    httpx.post(
        f"{portal_sandbox.stripe_url}/v1/invoices/{row.stripe_invoice_id}/pay", headers=STRIPE_AUTH
    ).raise_for_status()
    answer = client.post(f"/dashboard/replacements/{row.id}/withdraw", follow_redirects=True)
    assert "Your payment had already gone through: the replacement goes ahead." in (
        answer.get_data(as_text=True)
    )
    row = _row(session)
    assert row.status == "provisioning"
    assert _runs(session) == [f"replacement:{row.id}"]
    started = client.post(f"/dashboard/replacements/{row.id}/withdraw", follow_redirects=True)
    assert "it can no longer be withdrawn" in started.get_data(as_text=True)
    assert _row(session).status == "provisioning"
