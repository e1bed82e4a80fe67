"""The Billing page: the student's own finalized invoices from Stripe, with working receipt and PDF links."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from tests.factories import make_provision
from tests.factories import make_user

STRIPE_AUTH = {"Authorization": "Bearer sk_test_sandbox"}


@pytest.fixture
def ann(session: Session, auth: Any) -> Any:
    """A signed-in student."""
    user = make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    return user


class Stripe:
    """The sandbox's Stripe API, as the operator's Stripe account."""

    def __init__(self, sandbox: Any) -> None:
        self.url = f"{sandbox.stripe_url}/v1"

    def post(self, path: str, **data: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/{path}", data=data, headers=STRIPE_AUTH, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def customer(self, email: str) -> str:
        return str(self.post("customers", email=email)["id"])

    def invoice(self, customer: str, cents: int, *, then: str | None) -> dict[str, Any]:
        """A one-line invoice left as a draft (``then`` None), finalized or paid."""
        self.post(
            "invoiceitems", customer=customer, amount=cents, currency="usd", description="Fee"
        )
        invoice = self.post("invoices", customer=customer, pending_invoice_items_behavior="include")
        if then is not None:
            invoice = self.post(f"invoices/{invoice['id']}/{then}")
        return invoice


def _rows(page: str) -> list[list[str]]:
    table = page[page.index('<table class="table invoices">') :]
    table = table[: table.index("</table>")]
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        if "<td" in row
    ]


def test_the_billing_page_lists_finalized_invoices_with_receipt_and_pdf(
    client: Any, ann: Any, session: Session, portal_sandbox: Any
) -> None:
    stripe = Stripe(portal_sandbox)
    customer = stripe.customer("ann@example.com")
    paid = stripe.invoice(customer, 14400, then="pay")
    due = stripe.invoice(customer, 4900, then="finalize")
    draft = stripe.invoice(customer, 100, then=None)
    make_provision(session, ann, status="active", stripe_customer_id=customer)
    session.commit()

    page = client.get("/billing").get_data(as_text=True)

    rows = {row[1]: row for row in _rows(page)}
    assert set(rows) == {paid["number"], due["number"]}  # never the draft
    assert draft["id"] not in page
    # Date, invoice, for, amount, status, links.
    assert rows[paid["number"]][2:] == ["One-off charge", "$144", "Paid", "Receipt · PDF"]
    assert rows[due["number"]][3:5] == ["$49", "Due"]
    assert f'href="{paid["hosted_invoice_url"]}"' in page
    assert f'href="{paid["invoice_pdf"]}"' in page
    assert "Update card or cancel" in page  # the Stripe customer portal stays for card changes

    # The links work: Stripe's (here the sandbox's) hosted page and the PDF.
    hosted = httpx.get(paid["hosted_invoice_url"], timeout=10)
    assert hosted.status_code == 200
    assert paid["number"] in hosted.text and "$144.00" in hosted.text and "Paid on" in hosted.text
    pdf = httpx.get(paid["invoice_pdf"], timeout=10)
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4") and paid["number"].encode() in pdf.content


@pytest.mark.usefixtures("ann")
def test_the_billing_page_never_shows_another_students_invoices(
    client: Any, session: Session, portal_sandbox: Any
) -> None:
    stripe = Stripe(portal_sandbox)
    bob = make_user(session, "bob@example.com")
    bobs = stripe.customer("bob@example.com")
    invoice = stripe.invoice(bobs, 14400, then="pay")
    make_provision(session, bob, status="active", stripe_customer_id=bobs)
    session.commit()

    page = client.get("/billing").get_data(as_text=True)

    assert invoice["number"] not in page and "$144" not in page
    assert "No invoices yet" in page
    assert "Update card or cancel" not in page  # no Stripe customer of her own yet


def test_when_stripe_cannot_list_the_invoices_the_page_says_so(
    client: Any, ann: Any, session: Session, portal_sandbox: Any
) -> None:
    customer = Stripe(portal_sandbox).customer("ann@example.com")
    make_provision(session, ann, status="active", stripe_customer_id=customer)
    session.commit()
    # Stripe fails every try (the SDK's retries included).
    portal_sandbox.add_fault(
        vendor="stripe", method="GET", path="/v1/invoices", kind="status", status=500, times=10
    )

    response = client.get("/billing")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Your invoices cannot be loaded right now" in page
    assert "No invoices yet" not in page  # not mistaken for "none"
