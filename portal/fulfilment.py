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
from core.models import Upgrade
from core.models import UpgradeStatus
from portal import orchestration

log = logging.getLogger(__name__)

PAID = {"paid", "no_payment_required"}
LIVE_SUBSCRIPTION = {"active", "trialing"}
LATE_SUBSCRIPTION = {"past_due", "unpaid", "paused"}
ENDED_SUBSCRIPTION = {"canceled", "incomplete_expired"}

PAYMENT_FAILED_REASON = "Your payment did not go through, so nothing was set up. You can pay again from the review page."
PAYMENT_PROCESSING_REASON = (
    "Your bank is processing the payment. Setup starts by itself as soon as it clears."
)
PAST_DUE_REASON = "Your last payment failed. Update your card in Billing to keep your mailboxes."


def _meta(obj: Any) -> dict[str, str]:
    metadata = getattr(obj, "metadata", None)
    return (
        dict(metadata.to_dict())
        if metadata is not None and hasattr(metadata, "to_dict")
        else dict(metadata or {})
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _id(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else getattr(value, "id", None)


def cancel_key(provision: Provision) -> str:
    """One cancellation run per provision and subscription, whoever asks first (admin or Stripe)."""
    return f"cancel:{provision.id}:{provision.stripe_subscription_id or 'none'}"


def find_provision_for_session(db: Session, session: Any) -> Provision | None:
    """The provision a Checkout Session pays for (by session id, else by its metadata)."""
    provision = db.scalar(
        select(Provision).where(Provision.stripe_checkout_session_id == session.id)
    )
    if provision is not None:
        return provision
    meta = _meta(session)
    provision_id = _int(meta.get("provision_id") or getattr(session, "client_reference_id", None))
    user_id = _int(meta.get("user_id"))
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
    customer, subscription = _id(session.customer), _id(session.subscription)
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


def _provision_for_subscription(
    db: Session, subscription_id: str | None, metadata: dict[str, str]
) -> Provision | None:
    if subscription_id:
        found = db.scalar(
            select(Provision).where(Provision.stripe_subscription_id == subscription_id)
        )
        if found is not None:
            return found
    provision_id = _int(metadata.get("provision_id"))
    user_id = _int(metadata.get("user_id"))
    if provision_id is None:
        return None
    provision = db.get(Provision, provision_id)
    if provision is None or (user_id is not None and provision.user_id != user_id):
        return None
    if provision.stripe_subscription_id not in (None, subscription_id):
        return None
    return provision


def _newer(provision: Provision, created: datetime) -> bool:
    """Whether an event is not older than the subscription state we already applied."""
    return provision.stripe_event_at is None or created >= provision.stripe_event_at


def next_status(provision: Provision, subscription_status: str) -> str | None:
    """The provision status a subscription status implies, or None to leave it as it is."""
    current = provision.status
    # Only a paid checkout starts anything (M2): subscription events never do.
    if current == ProvisionStatus.PENDING_PAYMENT.value:
        return None
    if subscription_status in ENDED_SUBSCRIPTION:
        return (
            None if current == ProvisionStatus.CANCELLED.value else ProvisionStatus.CANCELLED.value
        )
    if subscription_status in LATE_SUBSCRIPTION:
        if current in (ProvisionStatus.ACTIVE.value, ProvisionStatus.UPGRADING.value):
            return ProvisionStatus.PAST_DUE.value
        return None
    if subscription_status in LIVE_SUBSCRIPTION and current == ProvisionStatus.PAST_DUE.value:
        return (
            ProvisionStatus.ACTIVE.value
            if provision.activated_at
            else ProvisionStatus.PROVISIONING.value
        )
    return None


def apply_subscription(db: Session, subscription: Any, created: datetime) -> str:
    """Mirror a subscription's status onto its provision, ignoring events older than our state."""
    provision = _provision_for_subscription(db, subscription.id, _meta(subscription))
    if provision is None:
        return "unknown_subscription"
    if not _newer(provision, created):
        return "stale"
    # A subscription leaves "incomplete" once and never returns: an "incomplete" snapshot arriving
    # late (events share one-second timestamps) must not overwrite what followed it.
    if subscription.status == "incomplete" and provision.subscription_status not in (
        None,
        "incomplete",
    ):
        return "stale"
    provision.stripe_event_at = created
    provision.subscription_status = subscription.status
    if provision.stripe_subscription_id is None:
        provision.stripe_subscription_id = subscription.id
    target = next_status(provision, subscription.status)
    if target is None:
        return "recorded"
    return _move(db, provision, target)


def _move(db: Session, provision: Provision, target: str) -> str:
    previous = provision.status
    provision.status = target
    if target == ProvisionStatus.PAST_DUE.value:
        provision.status_reason = PAST_DUE_REASON
    elif previous == ProvisionStatus.PAST_DUE.value:
        provision.status_reason = None
    if target == ProvisionStatus.CANCELLED.value:
        provision.cancelled_at = utcnow()
        provision.status_reason = provision.status_reason or "The subscription was cancelled."
        db.flush()
        # Release Zapmail seats and the rest: vendors keep billing until told (docs/market.md 3.2).
        orchestration.start_cancellation(provision.id, idempotency_key=cancel_key(provision))
    return f"{previous}->{target}"


def invoice_event(db: Session, event_type: str, invoice: Any, created: datetime) -> str:
    """Handle invoice.paid / invoice.payment_failed for upgrades and renewals."""
    meta = _meta(invoice)
    upgrade_id = _int(meta.get("upgrade_id"))
    if upgrade_id is not None:
        return _upgrade_fee_invoice(db, event_type, invoice, upgrade_id)
    subscription_id = None
    sub_meta: dict[str, str] = {}
    parent = getattr(invoice, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent else None
    if details is not None:
        subscription_id = _id(details.subscription)
        sub_meta = _meta(details)
    if getattr(invoice, "billing_reason", None) == "subscription_update":
        upgrade = db.scalar(
            select(Upgrade).where(Upgrade.stripe_proration_invoice_id == invoice.id)
        )
        # The subscription's metadata (snapshotted on its invoices) names the upgrade too, so an
        # invoice that arrives before the portal stored its id still finds it.
        named = _int(sub_meta.get("upgrade_id"))
        if upgrade is None and named is not None:
            upgrade = db.get(Upgrade, named)
            if upgrade is not None and upgrade.stripe_proration_invoice_id not in (
                None,
                invoice.id,
            ):
                upgrade = None
        if upgrade is not None:
            upgrade.stripe_proration_invoice_id = invoice.id
            return _upgrade_proration_invoice(db, event_type, upgrade)
    provision = _provision_for_subscription(db, subscription_id, sub_meta)
    if provision is None:
        return "unknown_subscription"
    if getattr(invoice, "billing_reason", None) != "subscription_cycle" or not _newer(
        provision, created
    ):
        return "recorded"
    provision.stripe_event_at = created
    if event_type == "invoice.payment_failed":
        target = next_status(provision, "past_due")
    else:
        target = next_status(provision, "active")
    return "recorded" if target is None else _move(db, provision, target)


def _upgrade_fee_invoice(db: Session, event_type: str, invoice: Any, upgrade_id: int) -> str:
    upgrade = db.get(Upgrade, upgrade_id)
    if upgrade is None or upgrade.stripe_invoice_id not in (None, invoice.id):
        return "unknown_upgrade"
    if event_type == "invoice.payment_failed":
        if upgrade.status == UpgradeStatus.PENDING_PAYMENT.value:
            upgrade.status_reason = "The setup fee payment failed; update your card and try again."
        return "upgrade_fee_failed"
    upgrade.stripe_invoice_id = invoice.id
    upgrade.fee_paid_at = upgrade.fee_paid_at or utcnow()
    return maybe_start_upgrade(db, upgrade)


def _upgrade_proration_invoice(db: Session, event_type: str, upgrade: Upgrade) -> str:
    if event_type == "invoice.payment_failed":
        if upgrade.status == UpgradeStatus.PENDING_PAYMENT.value:
            upgrade.status_reason = (
                "The subscription change payment failed; update your card and try again."
            )
        return "upgrade_proration_failed"
    upgrade.proration_paid_at = upgrade.proration_paid_at or utcnow()
    return maybe_start_upgrade(db, upgrade)


def maybe_start_upgrade(db: Session, upgrade: Upgrade) -> str:
    """Start the upgrade flow once both of its payments are in, at most once."""
    db.flush()
    if upgrade.fee_paid_at is None or upgrade.proration_paid_at is None:
        return "upgrade_awaiting_payment"
    won = db.execute(
        update(Upgrade)
        .where(Upgrade.id == upgrade.id, Upgrade.status == UpgradeStatus.PENDING_PAYMENT.value)
        .values(status=UpgradeStatus.PROVISIONING.value, paid_at=utcnow(), status_reason=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return "upgrade_already_started"
    db.execute(
        update(Provision)
        .where(
            Provision.id == upgrade.provision_id,
            Provision.status == ProvisionStatus.ACTIVE.value,
        )
        .values(status=ProvisionStatus.UPGRADING.value)
        .execution_options(synchronize_session=False)
    )
    run_id = orchestration.start_upgrade(upgrade.id, idempotency_key=f"upgrade:{upgrade.id}")
    db.execute(
        update(Upgrade)
        .where(Upgrade.id == upgrade.id)
        .values(flow_run_id=run_id)
        .execution_options(synchronize_session=False)
    )
    return "upgrade_started"


def event_time(event: Any) -> datetime:
    """The event's creation time as an aware datetime."""
    return datetime.fromtimestamp(int(event.created), UTC)
