"""Orders: what one Checkout Session sells (its snapshot), and which paid session wins.

A snapshot is written when the student presses Pay, in the same transaction that records the
Checkout Session, and names the session (``metadata.order_id``). Fulfilment then compares what
Stripe says was paid against the snapshot: only the provision's latest open snapshot, paid
exactly as frozen, is provisioned; any other paid session is refunded in full and its
subscription cancelled (flows/refund_order.py), with a reason the student can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.mailboxes import preview_addresses
from core.models import Domain
from core.models import OrderSnapshot
from core.models import OrderStatus
from core.models import Provision
from core.models import PurchaseState
from core.models import Tier

REFUND_DEPLOYMENT = "refund-order/on-demand"

# Reasons a paid session is refunded instead of provisioned; each is shown to the student.
SUPERSEDED_REASON = (
    "You changed your order after opening this payment page, so this older payment was not "
    "used. It has been refunded in full; the current order is unaffected."
)
ALREADY_PAID_REASON = (
    "Your order had already been paid in another window, so this second payment was not used. "
    "It has been refunded in full."
)
CANCELLED_REASON = (
    "This order was cancelled before the payment arrived, so nothing was set up. The payment "
    "has been refunded in full."
)
MISMATCH_REASON = (
    "The payment did not match the order it was made for ({detail}), so nothing was set up "
    "from it. It has been refunded in full; you can pay for your order again."
)
UNKNOWN_ORDER_REASON = (
    "This payment does not belong to an order we can match, so nothing was set up from it. "
    "It has been refunded in full; you can pay for your order again."
)
DOMAIN_TAKEN_REASON = (
    "A domain in this order was taken by another order before the payment arrived, so nothing "
    "was set up. The payment has been refunded in full; pick another domain and pay again."
)


def refund_key(session_id: str) -> str:
    """The outbox key (and refund run idempotency key) of refunding one Checkout Session."""
    return f"refund:{session_id}"


def addresses_for(
    domains: Sequence[str], patterns: Sequence[str], first: str, last: str
) -> list[str]:
    """Every mailbox address an order creates, rendered by the portal's one preview renderer."""
    return [
        address
        for _, addresses in preview_addresses(list(domains), list(patterns), first, last)
        for address in addresses
    ]


def _terms(
    tier: Tier, domains: Sequence[str], first: str, last: str, patterns: Sequence[str]
) -> dict[str, Any]:
    return {
        "tier_id": tier.id,
        "setup_cents": tier.setup_cents,
        "monthly_cents": tier.monthly_cents,
        "currency": tier.currency,
        "setup_price_id": tier.stripe_setup_price_id if tier.setup_cents else None,
        "monthly_price_id": tier.stripe_monthly_price_id,
        "domains": list(domains),
        "addresses": addresses_for(domains, patterns, first, last),
        "sender_first_name": first,
        "sender_last_name": last,
        "username_patterns": list(patterns),
    }


def sells(
    snapshot: OrderSnapshot,
    tier: Tier,
    domains: Sequence[str],
    first: str,
    last: str,
    patterns: Sequence[str],
) -> bool:
    """Whether ``snapshot`` sells exactly this order at today's tier prices."""
    terms = _terms(tier, domains, first, last, patterns)
    return all(getattr(snapshot, field) == value for field, value in terms.items())


def new_snapshot(
    db: Session,
    provision: Provision,
    tier: Tier,
    domains: Sequence[str],
    first: str,
    last: str,
    patterns: Sequence[str],
) -> OrderSnapshot:
    """Freeze what the next Checkout Session sells; older open snapshots become superseded.

    Flushed (so its id can go into the session's metadata); the caller stores the session id on
    it and commits both together.
    """
    snapshot = OrderSnapshot(
        provision_id=provision.id,
        status=OrderStatus.OPEN.value,
        **_terms(tier, domains, first, last, patterns),
    )
    db.add(snapshot)
    db.flush()
    db.execute(
        update(OrderSnapshot)
        .where(
            OrderSnapshot.provision_id == provision.id,
            OrderSnapshot.id != snapshot.id,
            OrderSnapshot.status == OrderStatus.OPEN.value,
        )
        .values(status=OrderStatus.SUPERSEDED.value, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return snapshot


def latest_open(db: Session, provision_id: int) -> OrderSnapshot | None:
    """The provision's newest snapshot if it is still open (the one a payment may fulfil)."""
    latest = latest_id(db, provision_id)
    if latest is None:
        return None
    snapshot = db.get(OrderSnapshot, latest)
    return snapshot if snapshot is not None and snapshot.status == OrderStatus.OPEN.value else None


def latest_id(db: Session, provision_id: int) -> int | None:
    """The id of the provision's newest snapshot: only that one can ever be provisioned."""
    return db.scalar(
        select(func.max(OrderSnapshot.id)).where(OrderSnapshot.provision_id == provision_id)
    )


def for_session(db: Session, session_id: str) -> OrderSnapshot | None:
    """The snapshot written for a Checkout Session."""
    return db.scalar(select(OrderSnapshot).where(OrderSnapshot.checkout_session_id == session_id))


def of_provision_now(
    db: Session,
    provision: Provision,
    session_id: str,
    *,
    status: OrderStatus = OrderStatus.OPEN,
    reason: str | None = None,
) -> OrderSnapshot:
    """A snapshot of the provision as it stands, for a paid session that has none of its own.

    Sessions created before snapshots existed (or whose snapshot was never committed) get one
    at decision time, so the decision and any refund are recorded like every other order.
    """
    tier = db.get(Tier, provision.tier_id)
    assert tier is not None
    names = sorted(
        d.name
        for d in provision.domains
        if d.upgrade_id is None and d.purchase_state == PurchaseState.SELECTED.value
    )
    first, last = provision.sender_first_name, provision.sender_last_name
    patterns = list(provision.username_patterns or [])
    try:
        terms = _terms(tier, names, first, last, patterns)
    except ValueError:
        # An unrenderable name cannot have been sold; the addresses stay empty and it is refunded.
        terms = _terms(tier, [], first, last, []) | {
            "domains": names,
            "username_patterns": patterns,
        }
    snapshot = OrderSnapshot(
        provision_id=provision.id,
        checkout_session_id=session_id,
        status=status.value,
        decision_reason=reason,
        decided_at=None if status == OrderStatus.OPEN else utcnow(),
        **terms,
    )
    db.add(snapshot)
    db.flush()
    return snapshot


def apply_to_provision(db: Session, provision: Provision, snapshot: OrderSnapshot) -> None:
    """Make the provision's tier, sender, patterns and unpaid domains exactly the snapshot's.

    They normally already are (the wizard writes both together); where they differ, the paid
    snapshot is the truth. Raises IntegrityError (in a savepoint the caller opened) when a
    snapshot domain now belongs to another order.
    """
    provision.tier_id = snapshot.tier_id
    provision.sender_first_name = snapshot.sender_first_name
    provision.sender_last_name = snapshot.sender_last_name
    provision.username_patterns = list(snapshot.username_patterns)
    wanted = set(snapshot.domains)
    held = {
        d.name: d
        for d in db.scalars(
            select(Domain).where(Domain.provision_id == provision.id, Domain.upgrade_id.is_(None))
        )
    }
    stray = [
        name
        for name, d in held.items()
        if name not in wanted and d.purchase_state == PurchaseState.SELECTED.value
    ]
    if stray:
        db.execute(
            delete(Domain)
            .where(Domain.provision_id == provision.id, Domain.name.in_(stray))
            .execution_options(synchronize_session=False)
        )
    for name in snapshot.domains:
        if name not in held:
            db.add(Domain(provision_id=provision.id, name=name))
    db.flush()
    db.expire(provision, ["domains"])


def domains_taken(db: Session, provision: Provision, snapshot: OrderSnapshot) -> bool:
    """Whether a domain of the snapshot is now held by another order."""
    if not snapshot.domains:
        return False
    holder = db.scalar(
        select(Domain.id).where(
            Domain.name.in_(list(snapshot.domains)), Domain.provision_id != provision.id
        )
    )
    return holder is not None


def refuse(db: Session, snapshot: OrderSnapshot, reason: str) -> None:
    """Record that a paid session is not fulfilled, and queue its refund (idempotent).

    The snapshot can never win afterwards (it is no longer open); the first reason recorded is
    the one the student reads.
    """
    db.execute(
        update(OrderSnapshot)
        .where(
            OrderSnapshot.id == snapshot.id,
            OrderSnapshot.status.in_(
                (OrderStatus.OPEN.value, OrderStatus.EXPIRED.value, OrderStatus.SUPERSEDED.value)
            ),
        )
        .values(
            status=OrderStatus.SUPERSEDED.value,
            decision_reason=func.coalesce(OrderSnapshot.decision_reason, reason),
            decided_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    db.refresh(snapshot)
    assert snapshot.checkout_session_id is not None
    outbox.enqueue(
        db,
        key=refund_key(snapshot.checkout_session_id),
        deployment=REFUND_DEPLOYMENT,
        parameters={"order_id": snapshot.id},
    )
