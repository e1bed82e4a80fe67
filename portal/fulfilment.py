"""Turning Stripe facts into provision state: exactly one provisioning per paid checkout (M2).

Called from the webhook (inside the transaction that records the event) and from the checkout
success page. A conditional UPDATE lets exactly one caller move a provision out of
``pending_payment``; only that caller starts the flow, with an idempotency key derived from the
Checkout Session id, so even a retried start returns the same flow run.
"""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Domain
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from portal import orchestration

log = logging.getLogger(__name__)

PAID = {"paid", "no_payment_required"}

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


def find_provision_for_session(db: Session, session: Any) -> Provision | None:
    """The provision a Checkout Session pays for (by session id, else by its metadata)."""
    provision = db.scalar(
        select(Provision).where(Provision.stripe_checkout_session_id == session.id)
    )
    if provision is not None:
        return provision
    meta = metadata_of(session)
    provision_id = as_int(meta.get("provision_id") or getattr(session, "client_reference_id", None))
    user_id = as_int(meta.get("user_id"))
    if provision_id is None or user_id is None:
        return None
    # An older session of the same cart (e.g. a second tab) may still be paid: accept it only for
    # the provision and student it names, and only while that provision still awaits payment.
    return db.scalar(
        select(Provision).where(
            Provision.id == provision_id,
            Provision.user_id == user_id,
            Provision.status == ProvisionStatus.PENDING_PAYMENT.value,
        )
    )


def fulfil_checkout(db: Session, session: Any) -> str:
    """Start provisioning for a paid Checkout Session at most once; return what happened.

    The caller commits; if starting the flow raises, the caller must roll back (the same
    idempotency key makes the next attempt return the same run).
    """
    provision = find_provision_for_session(db, session)
    if provision is None:
        return "unknown_session"
    customer, subscription = id_of(session.customer), id_of(session.subscription)
    # While unpaid, the session paying now is the truth (an earlier one may have failed).
    unpaid = provision.status == ProvisionStatus.PENDING_PAYMENT.value
    if customer and (unpaid or provision.stripe_customer_id is None):
        provision.stripe_customer_id = customer
    if subscription and (unpaid or provision.stripe_subscription_id is None):
        provision.stripe_subscription_id = subscription
    db.flush()
    if session.payment_status not in PAID:
        if provision.status == ProvisionStatus.PENDING_PAYMENT.value:
            provision.status_reason = PAYMENT_PROCESSING_REASON
        return "awaiting_payment"
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
            stripe_checkout_session_id=session.id,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return "already_started"
    run_id = orchestration.start_provision(provision.id, idempotency_key=f"checkout:{session.id}")
    db.execute(
        update(Provision)
        .where(Provision.id == provision.id)
        .values(current_flow_run_id=run_id)
        .execution_options(synchronize_session=False)
    )
    log.info("provision %s paid by %s: flow run %s", provision.id, session.id, run_id)
    return "started"


def payment_failed(db: Session, session: Any) -> str:
    """A delayed checkout payment failed: nothing is provisioned; the student may pay again."""
    provision = find_provision_for_session(db, session)
    if provision is None:
        return "unknown_session"
    if provision.status != ProvisionStatus.PENDING_PAYMENT.value:
        return "ignored"
    provision.status_reason = PAYMENT_FAILED_REASON
    return "payment_failed"


def checkout_expired(db: Session, session: Any) -> str:
    """An unpaid Checkout Session expired: release the domain names it held for others."""
    provision = db.scalar(
        select(Provision).where(Provision.stripe_checkout_session_id == session.id)
    )
    if provision is None or provision.status != ProvisionStatus.PENDING_PAYMENT.value:
        return "ignored"
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
