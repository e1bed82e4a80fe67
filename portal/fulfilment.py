"""Turning paid Checkout Sessions into provisioning, exactly as paid, once (M2).

Fulfilment never believes an event body: ``read_checkout`` reads the session (and its line items)
from Stripe, and only what Stripe says is compared against the order snapshot frozen when the
student pressed Pay (portal/orders.py). The provision's latest open snapshot, paid exactly as
frozen, wins: one transaction moves the provision pending_payment -> provisioning and the snapshot
open -> paid (both compare-and-set) and queues the run in the outbox (started after the commit,
idempotency key ``checkout:<session id>``). Every other paid session is refunded in full through
the outbox (``refund:<session id>``, flows/refund_order.py) with a reason the student can read.

Callers: the webhook (which reads the session before opening its transaction) and the checkout
success page. Both commit; neither talks to Prefect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.models import Domain
from core.models import OrderSnapshot
from core.models import OrderStatus
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from portal import billing
from portal import orders

log = logging.getLogger(__name__)

PAID = {"paid", "no_payment_required"}
PROVISION_DEPLOYMENT = "provision/on-demand"

PAYMENT_FAILED_REASON = "Your payment did not go through, so nothing was set up. You can pay again from the review page."
PAYMENT_PROCESSING_REASON = (
    "Your bank is processing the payment. Setup starts by itself as soon as it clears."
)


def metadata_of(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict."""
    metadata = getattr(obj, "metadata", None)
    return (
        dict(metadata.to_dict())
        if metadata is not None and hasattr(metadata, "to_dict")
        else dict(metadata or {})
    )


def as_int(value: Any) -> int | None:
    """An int from a metadata value, or None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def id_of(value: Any) -> str | None:
    """The id of an expandable Stripe field (an id string or an expanded object)."""
    if value is None:
        return None
    return value if isinstance(value, str) else getattr(value, "id", None)


@dataclass(frozen=True)
class StripeCheckout:
    """A Checkout Session as Stripe reports it when asked (never as an event body claims it)."""

    id: str
    status: str | None
    payment_status: str | None
    mode: str | None
    amount_total: int | None
    currency: str | None
    metadata: dict[str, str]
    customer: str | None
    subscription: str | None
    # (price id, quantity) of every line item, in Stripe's order.
    line_items: tuple[tuple[str, int], ...]


def _line_items(session: Any) -> tuple[tuple[str, int], ...]:
    items = getattr(session, "line_items", None)
    rows = []
    for item in getattr(items, "data", None) or []:
        price = getattr(item, "price", None)
        rows.append((id_of(price) or "", int(getattr(item, "quantity", 0) or 0)))
    return tuple(rows)


def read_checkout(session_id: str) -> StripeCheckout | None:
    """Read a Checkout Session (with its line items) from Stripe; None when Stripe has none.

    Raises ``billing.BillingError`` when Stripe cannot be asked: the caller answers "retry
    later". Call it outside any DB transaction; pass the result to the functions below.
    """
    session = billing.find_checkout(session_id)
    if session is None:
        return None
    total = getattr(session, "amount_total", None)
    return StripeCheckout(
        id=str(session.id),
        status=getattr(session, "status", None),
        payment_status=getattr(session, "payment_status", None),
        mode=getattr(session, "mode", None),
        amount_total=int(total) if total is not None else None,
        currency=getattr(session, "currency", None),
        metadata=metadata_of(session),
        customer=id_of(getattr(session, "customer", None)),
        subscription=id_of(getattr(session, "subscription", None)),
        line_items=_line_items(session),
    )


def _as_read(session: Any) -> StripeCheckout | None:
    """Stripe's copy of ``session``: given as read, or read now when handed anything else.

    Anything that is not a ``StripeCheckout`` (an event body's object) is used only for its id.
    """
    if isinstance(session, StripeCheckout):
        return session
    session_id = getattr(session, "id", None)
    if not isinstance(session_id, str) or not session_id:
        return None
    log.warning("checkout %s handed over unread; reading it from Stripe now", session_id)
    return read_checkout(session_id)


def _provision_named(db: Session, checkout: StripeCheckout) -> Provision | None:
    """The provision Stripe's copy of the session names (provision and student must agree)."""
    provision_id = as_int(checkout.metadata.get("provision_id"))
    user_id = as_int(checkout.metadata.get("user_id"))
    if provision_id is None or user_id is None:
        return None
    provision = db.get(Provision, provision_id)
    return provision if provision is not None and provision.user_id == user_id else None


def mismatch(snapshot: OrderSnapshot, checkout: StripeCheckout, *, legacy: bool) -> str | None:
    """What in Stripe's session differs from the snapshot it must pay for, or None."""
    meta = checkout.metadata
    if checkout.mode != "subscription":
        return f"mode {checkout.mode}"
    if checkout.customer is None or checkout.subscription is None:
        return "no customer or subscription"
    if as_int(meta.get("provision_id")) != snapshot.provision_id:
        return "another order"
    if not legacy and as_int(meta.get("order_id")) != snapshot.id:
        return "another version of the order"
    wanted = sorted(
        (price, 1) for price in (snapshot.monthly_price_id, snapshot.setup_price_id) if price
    )
    if sorted(checkout.line_items) != wanted:
        return "other prices"
    # Stripe charges the one-time setup fee and the first month together on the first invoice.
    if checkout.amount_total != snapshot.setup_cents + snapshot.monthly_cents:
        return "another amount"
    if (checkout.currency or "").lower() != snapshot.currency.lower():
        return "another currency"
    return None


def _snapshot_of(
    db: Session, provision: Provision, checkout: StripeCheckout
) -> tuple[OrderSnapshot, bool]:
    """The session's snapshot, and whether it is a legacy session (made before snapshots).

    A session without a snapshot of its own gets one recorded now, so its decision and any
    refund are kept like every other order's. Decision for those (see docs in the report):

    - the session the provision was already fulfilled by (before snapshots): recorded as paid;
    - a legacy session (no ``order_id``) of an order that has no snapshot yet: it may still win,
      but only if its line items and amount equal the provision's current tier exactly;
    - anything else (a legacy session once the student re-ordered, or an ``order_id`` we never
      committed): refunded once paid.
    """
    legacy = "order_id" not in checkout.metadata
    snapshot = orders.for_session(db, checkout.id)
    if snapshot is not None:
        return snapshot, legacy
    if (
        provision.stripe_checkout_session_id == checkout.id
        and provision.status != ProvisionStatus.PENDING_PAYMENT.value
        and provision.paid_at is not None
    ):
        return orders.of_provision_now(db, provision, checkout.id, status=OrderStatus.PAID), legacy
    if legacy and orders.latest_id(db, provision.id) is None:
        return orders.of_provision_now(db, provision, checkout.id), legacy
    snapshot = orders.of_provision_now(
        db,
        provision,
        checkout.id,
        status=OrderStatus.SUPERSEDED,
        reason=orders.UNKNOWN_ORDER_REASON,
    )
    return snapshot, legacy


def fulfil_checkout(db: Session, session: Any) -> str:
    """Provision a paid Checkout Session exactly as its snapshot, or refund it; return the outcome.

    ``session`` must be what ``read_checkout`` returned (anything else is re-read from Stripe).
    Outcomes: ``started`` (this session won; the run is queued in the outbox), ``refund_queued``,
    ``already_started``, ``already_refunded``, ``awaiting_payment``, ``not_complete``,
    ``unknown_session``. The caller commits.
    """
    checkout = _as_read(session)
    if checkout is None:
        return "unknown_session"
    if checkout.status != "complete":
        return "not_complete"
    provision = _provision_named(db, checkout)
    if provision is None:
        log.error("paid checkout %s names no provision of ours", checkout.id)
        return "unknown_session"
    snapshot, legacy = _snapshot_of(db, provision, checkout)
    if snapshot.provision_id != provision.id:
        orders.refuse(db, snapshot, orders.UNKNOWN_ORDER_REASON)
        return "refund_queued"
    if checkout.payment_status not in PAID:
        if _is_winner(db, provision, snapshot):
            provision.status_reason = PAYMENT_PROCESSING_REASON
        return "awaiting_payment"
    if snapshot.status == OrderStatus.PAID.value:
        return "already_started"
    if snapshot.status == OrderStatus.REFUNDED.value:
        return "already_refunded"
    detail = mismatch(snapshot, checkout, legacy=legacy)
    if detail is not None:
        reason = orders.MISMATCH_REASON.format(detail=detail)
    elif _is_winner(db, provision, snapshot):
        won = _win(db, provision, snapshot, checkout)
        if won is None:
            return "started"
        reason = won
    else:
        reason = _losing_reason(provision, snapshot)
    orders.refuse(db, snapshot, reason)
    log.warning("checkout %s refunded: %s", checkout.id, reason)
    return "refund_queued"


def _is_winner(db: Session, provision: Provision, snapshot: OrderSnapshot) -> bool:
    return (
        snapshot.status == OrderStatus.OPEN.value
        and provision.status == ProvisionStatus.PENDING_PAYMENT.value
        and orders.latest_id(db, provision.id) == snapshot.id
    )


def _losing_reason(provision: Provision, snapshot: OrderSnapshot) -> str:
    if snapshot.decision_reason:
        return snapshot.decision_reason
    if provision.status == ProvisionStatus.CANCELLED.value:
        return orders.CANCELLED_REASON
    if provision.status != ProvisionStatus.PENDING_PAYMENT.value:
        return orders.ALREADY_PAID_REASON
    return orders.SUPERSEDED_REASON


def _win(
    db: Session, provision: Provision, snapshot: OrderSnapshot, checkout: StripeCheckout
) -> str | None:
    """Both compare-and-sets, the order made exactly the snapshot, the run queued.

    Returns None on success, else why this session cannot be fulfilled (nothing left changed).
    No savepoint (SQLite's driver handles them poorly): the snapshot is claimed first and given
    back when the provision's compare-and-set loses.
    """
    if orders.domains_taken(db, provision, snapshot):
        return orders.DOMAIN_TAKEN_REASON
    claimed = db.execute(
        update(OrderSnapshot)
        .where(OrderSnapshot.id == snapshot.id, OrderSnapshot.status == OrderStatus.OPEN.value)
        .values(status=OrderStatus.PAID.value, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.refresh(snapshot)
        db.refresh(provision)
        return _losing_reason(provision, snapshot)
    won = db.execute(
        update(Provision)
        .where(
            Provision.id == provision.id,
            Provision.status == ProvisionStatus.PENDING_PAYMENT.value,
        )
        .values(
            status=ProvisionStatus.PROVISIONING.value,
            status_reason=None,
            paid_at=utcnow(),
            stripe_checkout_session_id=checkout.id,
            stripe_customer_id=checkout.customer,
            stripe_subscription_id=checkout.subscription,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.refresh(provision)
    if won != 1:
        # Another session won meanwhile: this snapshot was never provisioned; give it back.
        db.execute(
            update(OrderSnapshot)
            .where(OrderSnapshot.id == snapshot.id, OrderSnapshot.status == OrderStatus.PAID.value)
            .values(status=OrderStatus.OPEN.value, decided_at=None)
            .execution_options(synchronize_session=False)
        )
        db.refresh(snapshot)
        return _losing_reason(provision, snapshot)
    orders.apply_to_provision(db, provision, snapshot)
    db.refresh(snapshot)
    outbox.enqueue(
        db,
        key=f"checkout:{checkout.id}",
        deployment=PROVISION_DEPLOYMENT,
        parameters={"provision_id": provision.id},
    )
    log.info(
        "provision %s paid by %s (order %s): run queued", provision.id, checkout.id, snapshot.id
    )
    return None


def payment_failed(db: Session, session: Any) -> str:
    """A delayed checkout payment failed (as Stripe says): nothing is provisioned; pay again."""
    checkout = _as_read(session)
    if checkout is None:
        return "unknown_session"
    provision = _provision_named(db, checkout)
    snapshot = orders.for_session(db, checkout.id)
    if provision is None or snapshot is None or not _is_winner(db, provision, snapshot):
        return "ignored"
    if checkout.payment_status in PAID:
        return "ignored"
    # A failed delayed payment is final for this session: its snapshot can never be paid now.
    # Closing it also keeps a late "completed" event (Stripe does not order events) from
    # putting back "your bank is processing", which would block paying again.
    db.execute(
        update(OrderSnapshot)
        .where(OrderSnapshot.id == snapshot.id, OrderSnapshot.status == OrderStatus.OPEN.value)
        .values(
            status=OrderStatus.EXPIRED.value,
            decided_at=utcnow(),
            decision_reason=PAYMENT_FAILED_REASON,
        )
        .execution_options(synchronize_session=False)
    )
    provision.status_reason = PAYMENT_FAILED_REASON
    return "payment_failed"


def checkout_expired(db: Session, session: Any) -> str:
    """An unpaid session expired (as Stripe says): its snapshot expires; its held names go free."""
    checkout = _as_read(session)
    if checkout is None or checkout.status != "expired":
        return "ignored"
    snapshot = orders.for_session(db, checkout.id)
    if snapshot is not None:
        db.execute(
            update(OrderSnapshot)
            .where(OrderSnapshot.id == snapshot.id, OrderSnapshot.status == OrderStatus.OPEN.value)
            .values(status=OrderStatus.EXPIRED.value, decided_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    provision = db.scalar(
        select(Provision).where(Provision.stripe_checkout_session_id == checkout.id)
    )
    if provision is None or provision.status != ProvisionStatus.PENDING_PAYMENT.value:
        return "expired" if snapshot is not None else "ignored"
    db.execute(
        delete(Domain).where(
            Domain.provision_id == provision.id,
            Domain.purchase_state == PurchaseState.SELECTED.value,
        )
    )
    provision.stripe_checkout_session_id = None
    return "released"


def event_time(event: Any) -> datetime:
    """The event's creation time as an aware datetime."""
    return datetime.fromtimestamp(int(event.created), UTC)
