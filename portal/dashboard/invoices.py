"""The Billing page: the student's invoices and receipts from Stripe, with their hosted and PDF links.

Card changes and cancellation stay in the Stripe customer portal (portal/dashboard/billing_portal.py);
this page only reads. Drafts are Stripe's work in progress and are never shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

import stripe
from flask import current_app
from flask import render_template
from flask.typing import ResponseReturnValue

from portal import billing
from portal.dashboard import bp
from portal.dashboard.scope import own_provision
from portal.extensions import student_required

# Invoices shown; older ones stay reachable in the Stripe customer portal.
LIMIT = 100
REASONS = {
    "subscription_create": "Setup fee and first month",
    "subscription_cycle": "Monthly subscription",
    "subscription_update": "Package change",
    "manual": "One-off charge",
}
# Status word and badge colour (the portal's badge classes).
STATUSES = {
    "paid": ("Paid", "green"),
    "open": ("Due", "amber"),
    "void": ("Void", "gray"),
    "uncollectible": ("Unpaid", "red"),
}


@dataclass(frozen=True)
class InvoiceRow:
    """One invoice as the Billing page shows it."""

    number: str
    issued: datetime
    what: str
    amount_cents: int
    currency: str
    status: str
    badge: str
    view_url: str | None
    pdf_url: str | None


def invoice_rows(invoices: list[dict[str, Any]]) -> list[InvoiceRow]:
    """Finalized invoices (newest first) as page rows."""
    rows = []
    for inv in invoices:
        if inv.get("status") not in STATUSES:
            continue  # a draft (or a status Stripe adds later) is not the student's to see
        word, badge = STATUSES[inv["status"]]
        issued = inv.get("effective_at") or inv["created"]
        rows.append(
            InvoiceRow(
                number=inv.get("number") or inv["id"],
                issued=datetime.fromtimestamp(issued, tz=UTC),
                what=REASONS.get(inv.get("billing_reason") or "", "Invoice"),
                amount_cents=int(inv.get("total") or 0),
                currency=inv.get("currency") or "usd",
                status=word,
                badge=badge,
                view_url=inv.get("hosted_invoice_url"),
                pdf_url=inv.get("invoice_pdf"),
            )
        )
    return sorted(rows, key=lambda r: r.issued, reverse=True)


@bp.get("/billing")
@student_required
def invoices() -> ResponseReturnValue:
    """The student's invoices and receipts, read from Stripe on each visit."""
    provision = own_provision()
    customer = provision.stripe_customer_id if provision is not None else None
    rows: list[InvoiceRow] = []
    more = False
    error = None
    if customer:
        try:
            page = billing.stripe_client().v1.invoices.list({"customer": customer, "limit": LIMIT})
            rows = invoice_rows([inv.to_dict() for inv in page.data])
            more = bool(page.has_more)
        except stripe.StripeError as exc:
            current_app.logger.warning("invoice list for %s: %s", customer, exc)
            error = "Your invoices cannot be loaded right now; please try again in a minute."
    return render_template(
        "dashboard/invoices.html", rows=rows, more=more, error=error, customer=customer
    )
