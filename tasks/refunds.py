"""Refunding a paid Checkout Session that was not fulfilled (portal/orders.py decided so).

Each task reads Stripe first and changes only what is still to change, and every money call
carries an idempotency key derived from the order id, so a rerun or a retry from the Prefect UI
refunds nothing twice. Nothing is cached: Stripe is the record of what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

import stripe
from prefect import task
from sqlalchemy import update

from clients.stripe import make_stripe_client
from core.db import utcnow
from core.models import OrderSnapshot
from core.models import OrderStatus
from core.models import Provision
from tasks import notifications
from tasks import runtime
from tasks.errors import PipelineError
from tasks.policies import vendor_task_options

T = TypeVar("T")
# A refund is only ever made for a snapshot that was decided against (never for the winner).
REFUNDABLE = (OrderStatus.SUPERSEDED.value, OrderStatus.EXPIRED.value, OrderStatus.REFUNDED.value)
ENDED = ("canceled", "incomplete_expired")


class NotRefundableError(PipelineError):
    """The order is not one to refund (it won, or was never decided against): nothing was done."""

    student_message = "Nothing was changed."


class StripeUnavailableError(PipelineError):
    """Stripe did not answer (connection, rate limit, 5xx): the task is retried."""

    retryable = True


class NoPaymentError(PipelineError):
    """The session has no payment to refund (it was never paid): an operator should look."""


def _stripe(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise StripeUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except stripe.APIError as exc:
        raise StripeUnavailableError(f"{what}: {exc}") from exc


def _metadata(obj: Any) -> dict[str, Any]:
    # A StripeObject is not a dict since SDK 15.
    metadata = getattr(obj, "metadata", None)
    return dict(metadata.to_dict()) if metadata is not None else {}


def _client() -> stripe.StripeClient:
    return make_stripe_client(runtime.settings())


def refund_idempotency_key(order_id: int) -> str:
    """The Stripe idempotency key of an order's refund (one refund per order, ever)."""
    return f"order-refund:{order_id}"


@task(name="load-refund-order", **vendor_task_options(None))
def load_order(order_id: int) -> dict[str, Any]:
    """The order to refund: its session, provision and reason; refuses a winning order."""
    with runtime.db() as session:
        snapshot = session.get(OrderSnapshot, order_id)
        if snapshot is None:
            raise NotRefundableError(f"order {order_id} does not exist")
        if snapshot.status not in REFUNDABLE or not snapshot.checkout_session_id:
            raise NotRefundableError(
                f"order {order_id} is {snapshot.status}: only orders decided against are refunded"
            )
        provision = session.get(Provision, snapshot.provision_id)
        assert provision is not None
        return {
            "order_id": snapshot.id,
            "provision_id": snapshot.provision_id,
            "session_id": snapshot.checkout_session_id,
            "reason": snapshot.decision_reason or "",
            "student": provision.user.email,
            "live_subscription": provision.stripe_subscription_id,
        }


def _payment_intent(client: stripe.StripeClient, session_id: str) -> tuple[str, Any]:
    """The session's PaymentIntent (through its invoice in subscription mode) and the session."""
    checkout = _stripe(
        "retrieve checkout session", lambda: client.v1.checkout.sessions.retrieve(session_id)
    )
    intent = getattr(checkout, "payment_intent", None)
    if intent is None and checkout.invoice:
        invoice_id = checkout.invoice if isinstance(checkout.invoice, str) else checkout.invoice.id
        invoice = _stripe(
            "retrieve invoice",
            lambda: client.v1.invoices.retrieve(invoice_id, {"expand": ["payments"]}),
        )
        for payment in getattr(invoice.payments, "data", None) or []:
            if payment.status == "paid" and payment.payment.type == "payment_intent":
                intent = payment.payment.payment_intent
                break
    if intent is None:
        raise NoPaymentError(f"checkout session {session_id} has no payment to refund")
    return (intent if isinstance(intent, str) else intent.id), checkout


@task(name="refund-order-payment", **vendor_task_options(None))
def refund_payment(order_id: int, session_id: str) -> str:
    """Refund the session's payment in full, once; return the refund id.

    Reads the payment's refunds first: a refund already made for this order (or a charge
    already fully refunded by anyone) is the answer, and nothing new is sent.
    """
    client = _client()
    intent, _ = _payment_intent(client, session_id)
    refunds = _stripe(
        "list refunds", lambda: client.v1.refunds.list({"payment_intent": intent, "limit": 100})
    )
    mine = [r for r in refunds.data if _metadata(r).get("order_id") == str(order_id)]
    if mine:
        return str(mine[0].id)
    charge_id = _stripe(
        "retrieve payment intent", lambda: client.v1.payment_intents.retrieve(intent)
    ).latest_charge
    charge = _stripe("retrieve charge", lambda: client.v1.charges.retrieve(str(charge_id)))
    if charge.refunded and refunds.data:
        # Refunded in full by someone else (an admin in the dashboard): nothing is left to return.
        return str(refunds.data[0].id)
    refund = _stripe(
        "create refund",
        lambda: client.v1.refunds.create(
            {
                "payment_intent": intent,
                "reason": "requested_by_customer",
                "metadata": {
                    "order_id": str(order_id),
                    "checkout_session": session_id,
                    "kind": "order_not_fulfilled",
                },
            },
            {"idempotency_key": refund_idempotency_key(order_id)},
        ),
    )
    return str(refund.id)


@task(name="cancel-order-subscription", **vendor_task_options(None))
def cancel_subscription(session_id: str, live_subscription: str | None) -> str:
    """Cancel the session's subscription at once unless it is the provision's live one.

    Returns what happened: ``cancelled``, ``already_ended``, ``kept_live`` or ``none``.
    """
    client = _client()
    checkout = _stripe(
        "retrieve checkout session", lambda: client.v1.checkout.sessions.retrieve(session_id)
    )
    sub = checkout.subscription
    sub_id = sub if isinstance(sub, str) or sub is None else sub.id
    if sub_id is None:
        return "none"
    if sub_id == live_subscription:
        # Never the case for a session that lost, but the student's live service is not ours to end.
        return "kept_live"
    subscription = _stripe(
        "retrieve subscription", lambda: client.v1.subscriptions.retrieve(sub_id)
    )
    if subscription.status in ENDED:
        return "already_ended"
    try:
        client.v1.subscriptions.cancel(sub_id)
    except stripe.InvalidRequestError as exc:
        # Ended between the read and the cancel: that is the state we want.
        if "cancel" not in str(exc).lower():
            raise
        return "already_ended"
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise StripeUnavailableError(f"cancel subscription: {exc}") from exc
    return "cancelled"


@task(name="finish-order-refund", **vendor_task_options(None))
def finish_refund(order_id: int, refund_id: str) -> list[str]:
    """Mark the order refunded (with the refund id) and queue the student's email; return its key."""
    with runtime.db() as session:
        session.execute(
            update(OrderSnapshot)
            .where(OrderSnapshot.id == order_id, OrderSnapshot.status.in_(REFUNDABLE))
            .values(status=OrderStatus.REFUNDED.value, stripe_refund_id=refund_id)
            .values(decided_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        snapshot = session.get(OrderSnapshot, order_id)
        assert snapshot is not None
        provision = session.get(Provision, snapshot.provision_id)
        assert provision is not None
        amount = snapshot.setup_cents + snapshot.monthly_cents
        reason = snapshot.decision_reason or "This payment was not used for your order."
        key = notifications.queue_for_student(
            session,
            provision,
            key=f"order-refunded:{order_id}",
            subject="Your payment was refunded",
            body=f"{reason}\n\nRefunded: {amount / 100:.2f} {snapshot.currency.upper()} "
            f"(refund {refund_id}). The subscription that came with this payment was cancelled, "
            "so it will not charge again. Banks usually show the refund within 5-10 days.",
        )
        return [key]
