"""What a Stripe event is about, read from Stripe itself, and what the portal does about it.

A signed event body is only a hint: sessions, subscriptions, invoices, charges and disputes are
read from Stripe before any transaction opens (``read_truth``), and ``dispatch`` acts on that
reading inside the webhook's transaction. A body that claims a payment, a cancellation or a
status Stripe does not report changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy.orm import Session

from portal import billing
from portal import fulfilment
from portal import subscriptions
from portal.billing import BillingError

HANDLED = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
    }
)
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_failed"})
CHECKOUT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)


class StripeUnavailableError(Exception):
    """Stripe could not be read; the delivery is answered 503 so that Stripe retries it."""


def has_object_id(event: Any) -> bool:
    """Whether the event carries an object with a string id (all that its handler may rely on)."""
    obj = event.data.object
    if not isinstance(obj, stripe.StripeObject):
        return False
    return isinstance(obj.to_dict().get("id"), str)


def read_truth(event: Any) -> Any:
    """What the event is about, read from Stripe before any transaction; None if Stripe has none.

    Every object is acted on only as Stripe reports it now: a signed body could still claim a
    payment that never happened, or a status the subscription no longer (or never) had.
    """
    kind = event.type
    obj = event.data.object
    try:
        if kind in CHECKOUT_EVENTS:
            return fulfilment.read_checkout(obj.id)
        if kind in SUBSCRIPTION_EVENTS:
            return _retrieve("subscriptions", str(obj.id))
        if kind in INVOICE_EVENTS:
            return _retrieve("invoices", str(obj.id))
        if kind == "charge.refunded":
            charge = _read_charge(obj.id)
            if charge is not None and _refunded_by_us_for_an_unfulfilled_order(charge.id):
                return _OUR_ORDER_REFUND
            return charge
        if kind == "charge.dispute.closed":
            return _read_dispute(str(obj.id))
    except (BillingError, stripe.StripeError) as exc:
        raise StripeUnavailableError(str(exc)) from exc
    return obj


# A charge.refunded for a payment the refund-order flow returned: not the live order's money.
_OUR_ORDER_REFUND = object()


def _refunded_by_us_for_an_unfulfilled_order(charge_id: str) -> bool:
    """Whether every refund of the charge is one the refund-order flow made (a losing session)."""
    refunds = billing.stripe_client().v1.refunds.list({"charge": charge_id, "limit": 100}).data
    return bool(refunds) and all(
        fulfilment.metadata_of(refund).get("kind") == "order_not_fulfilled" for refund in refunds
    )


@dataclass(frozen=True)
class _ClosedDispute:
    """A dispute as Stripe reports it now, with the charge it is about."""

    status: str
    charge: Any


def _read_dispute(dispute_id: str) -> _ClosedDispute | None:
    """Read the dispute and its charge from Stripe (its status decides; the body never does)."""
    try:
        dispute = billing.stripe_client().v1.disputes.retrieve(dispute_id)
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            return None
        raise
    charge_id = fulfilment.id_of(getattr(dispute, "charge", None))
    charge = _read_charge(charge_id) if charge_id else None
    return None if charge is None else _ClosedDispute(str(dispute.status or ""), charge)


def _read_charge(charge_id: str) -> Any:
    return _retrieve("charges", charge_id)


def _retrieve(resource: str, object_id: str) -> Any:
    """The object as Stripe reports it now (``resource`` names the v1 service), None if missing."""
    try:
        return getattr(billing.stripe_client().v1, resource).retrieve(object_id)
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            return None
        raise


def dispatch(db: Session, event: Any, truth: Any) -> str:
    kind = event.type
    created = fulfilment.event_time(event)
    if kind in CHECKOUT_EVENTS and truth is None:
        return "unknown_session"
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return fulfilment.fulfil_checkout(db, truth)
    if kind == "checkout.session.async_payment_failed":
        return fulfilment.payment_failed(db, truth)
    if kind == "checkout.session.expired":
        return fulfilment.checkout_expired(db, truth)
    if kind in SUBSCRIPTION_EVENTS:
        if truth is None:
            return "unknown_subscription"
        return subscriptions.apply_subscription(db, truth, created)
    if kind in INVOICE_EVENTS:
        if truth is None:
            return "unknown_invoice"
        # The event names what happened to the invoice; Stripe's answer says whether it holds.
        if kind == "invoice.paid" and truth.status != "paid":
            return f"invoice_not_paid ({truth.status})"
        if kind == "invoice.payment_failed" and truth.status == "paid":
            return "invoice_since_paid"
        return subscriptions.invoice_event(db, kind, truth, created)
    if kind == "charge.refunded":
        if truth is _OUR_ORDER_REFUND:
            return "unfulfilled_order_refund_recorded"
        return "unknown_charge" if truth is None else subscriptions.charge_refunded(db, truth)
    if kind == "charge.dispute.created":
        return "dispute_recorded"
    if kind == "charge.dispute.closed":
        if truth is None:
            return "unknown_dispute"
        return subscriptions.dispute_closed(db, truth.status, truth.charge)
    return "ignored"
