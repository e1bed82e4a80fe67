"""Charging a burned-domain replacement's one-time fee to the card on file (a Stripe invoice).

Like an upgrade's setup fee (portal/billing.py ``charge_upgrade``): an invoice and its one item,
each created under our own idempotency key, then paid at once. The amount is the fee recorded on
the replacement row (from the tier, never a form). The invoice carries our metadata so that the
``invoice.paid`` webhook can complete a replacement whose page never heard back.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.models import DomainReplacement
from core.models import Provision
from portal.billing import BillingError
from portal.billing import _call
from portal.billing import stripe_client


@dataclass(frozen=True)
class ReplacementCharge:
    """Where the replacement's invoice stands after the charge attempt."""

    invoice_id: str
    paid: bool


def replacement_metadata(replacement: DomainReplacement) -> dict[str, str]:
    """The metadata on the replacement's invoice and item (what the webhook reads)."""
    return {
        "kind": "replacement",
        "replacement_id": str(replacement.id),
        "provision_id": str(replacement.provision_id),
    }


def charge_replacement(replacement: DomainReplacement, provision: Provision) -> ReplacementCharge:
    """Invoice the replacement's fee and pay it now with the customer's card on file.

    Sets ``replacement.stripe_invoice_id`` once the invoice bills the fee (the caller commits it,
    also after a decline), so a retry pays the same invoice. Raises BillingError on a decline or
    when Stripe does not answer; every request is idempotent, so retrying never charges twice.
    """
    if not provision.stripe_customer_id:
        raise BillingError(
            "provision has no Stripe customer",
            student_message="There is no card on file for your account; open Billing to add one.",
        )
    if replacement.fee_cents <= 0:
        raise BillingError("replacement has no fee to charge")
    client = stripe_client()
    meta = replacement_metadata(replacement)
    prefix = f"replacement:{replacement.id}"
    old, new = replacement.old_domain.name, replacement.new_domain.name
    invoice_id = replacement.stripe_invoice_id
    if invoice_id is None:
        invoice = _call(
            "create replacement invoice",
            client.v1.invoices.create,
            {
                "customer": provision.stripe_customer_id,
                "auto_advance": False,
                "description": f"Replacement of the burned domain {old} by {new}",
                "metadata": meta,
            },
            {"idempotency_key": f"{prefix}:invoice"},
        )
        _call(
            "create replacement item",
            client.v1.invoice_items.create,
            {
                "customer": provision.stripe_customer_id,
                "invoice": invoice.id,
                "amount": replacement.fee_cents,
                "currency": provision.tier.currency,
                "description": f"New domain {new} replacing {old}",
                "metadata": meta,
            },
            {"idempotency_key": f"{prefix}:item"},
        )
        # Remembered only with its item on it: a stored invoice always bills the fee.
        invoice_id = replacement.stripe_invoice_id = invoice.id
    current = _call("retrieve replacement invoice", client.v1.invoices.retrieve, invoice_id)
    if current.status == "paid":
        return ReplacementCharge(invoice_id, True)
    if current.total != replacement.fee_cents:
        # Never pay an invoice for another amount (an empty draft would even count as paid).
        raise BillingError(
            f"replacement invoice {invoice_id} totals {current.total}, not {replacement.fee_cents}",
            student_message="Nothing was charged: this payment needs your instructor's help.",
        )
    paid = _call(
        "pay replacement invoice",
        client.v1.invoices.pay,
        invoice_id,
        {},
        # One key per payment attempt: a retry after a decline is a new attempt, a repeated
        # request within one attempt replays Stripe's first answer.
        {"idempotency_key": f"{prefix}:pay:{invoice_id}:{current.attempt_count or 0}"},
    )
    return ReplacementCharge(invoice_id, paid.status == "paid")


def void_unpaid_invoice(replacement: DomainReplacement) -> bool:
    """Make the replacement's invoice unpayable; False if Stripe reports it paid already.

    Voiding is Stripe's own arbiter against a payment racing in another tab: once void, no
    payment can succeed; if the payment won, the void is refused and the invoice reads paid.
    """
    invoice_id = replacement.stripe_invoice_id
    if invoice_id is None:
        return True
    client = stripe_client()
    current = _call("retrieve replacement invoice", client.v1.invoices.retrieve, invoice_id)
    if current.status == "draft":
        current = _call(
            "finalize replacement invoice", client.v1.invoices.finalize_invoice, invoice_id
        )
    if current.status == "open":
        try:
            current = _call("void replacement invoice", client.v1.invoices.void_invoice, invoice_id)
        except BillingError:
            current = _call("retrieve replacement invoice", client.v1.invoices.retrieve, invoice_id)
    if current.status == "paid":
        return False
    if current.status not in ("void", "uncollectible"):
        raise BillingError(f"replacement invoice {invoice_id} is {current.status}")
    return True
