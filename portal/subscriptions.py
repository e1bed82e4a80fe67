"""Turning Stripe subscription, invoice, refund and dispute facts into provision and upgrade state.

Subscription events mirror the subscription's status onto its provision (never starting
provisioning: only a paid checkout does, see portal/fulfilment.py), ignoring events older than
the state already applied. ``unpaid`` and ``paused`` subscriptions start the dunning clock
(``Provision.past_due_since``); the watchdog cancels the order once the grace period has passed
(tasks/billing_guard.py). Invoice events pay upgrades (two invoices each) and renewals. A full refund
or a lost dispute cancels the order; the watchdog then cancels a subscription still billing.
Nothing here calls Stripe or Prefect: runs are queued in the outbox and started after the commit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core import replacements
from core.cancellation import request_cancellation
from core.db import utcnow
from core.models import DomainReplacement
from core.models import Notification
from core.models import Provision
from core.models import ProvisionStatus
from core.models import ReplacementStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from portal.fulfilment import as_int
from portal.fulfilment import id_of
from portal.fulfilment import metadata_of

log = logging.getLogger(__name__)

LIVE_SUBSCRIPTION = {"active", "trialing"}
LATE_SUBSCRIPTION = {"past_due", "unpaid", "paused"}
# Stripe stopped retrying (unpaid) or the subscription is paused: the dunning clock runs.
DUNNING_SUBSCRIPTION = {"unpaid", "paused"}
ENDED_SUBSCRIPTION = {"canceled", "incomplete_expired"}

PAST_DUE_REASON = "Your last payment failed. Update your card in Billing to keep your mailboxes."
SUBSCRIPTION_ENDED_REASON = "The subscription was cancelled."
REFUNDED_REASON = "The payment was refunded, so the order was cancelled."
DISPUTE_LOST_REASON = (
    "The payment was disputed and the dispute was lost, so the order was cancelled."
)
UPGRADE_DEPLOYMENT = "upgrade/on-demand"
REPLACEMENT_FEE_FAILED = (
    "The replacement fee could not be charged; update your card in Billing and try again."
)


def upgrade_key(upgrade_id: int, generation: int = 0) -> str:
    """Idempotency key of an upgrade's run (a new generation only when the watchdog restarts it)."""
    return f"upgrade:{upgrade_id}" if generation == 0 else f"upgrade:{upgrade_id}:g{generation}"


def tell_student(db: Session, provision: Provision, *, key: str, subject: str, body: str) -> None:
    """Queue one email to the provision's student in this transaction (sweep-waiting sends it)."""
    if db.scalar(select(Notification.id).where(Notification.key == key)) is None:
        db.add(Notification(key=key, recipient=provision.user.email, subject=subject, body=body))


def cancel_order(db: Session, provision: Provision, *, reason: str, key: str) -> str:
    """Cancel the order (compare-and-set, release queued) and tell the student; idempotent."""
    db.flush()
    if not request_cancellation(db, provision.id, reason=reason):
        db.refresh(provision)
        return "already_cancelled"
    db.refresh(provision)
    tell_student(
        db,
        provision,
        key=f"{key}:student",
        subject="Your outbound infrastructure order was cancelled",
        body=f"{reason}\n\nYour mailboxes stop warming up and are removed; no further charges "
        "are made. Reply to this email if this is a mistake.",
    )
    return f"cancelled ({reason})"


def _provision_for_subscription(
    db: Session, subscription_id: str | None, metadata: dict[str, str]
) -> Provision | None:
    if subscription_id:
        found = db.scalar(
            select(Provision).where(Provision.stripe_subscription_id == subscription_id)
        )
        if found is not None:
            return found
    provision_id = as_int(metadata.get("provision_id"))
    user_id = as_int(metadata.get("user_id"))
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
    provision = _provision_for_subscription(db, subscription.id, metadata_of(subscription))
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
    _dunning_clock(provision, subscription.status, created)
    target = next_status(provision, subscription.status)
    if target is None:
        return "recorded"
    return _move(db, provision, target)


def _dunning_clock(provision: Provision, subscription_status: str, created: datetime) -> None:
    # Started once (the first unpaid/paused event), stopped when the subscription is live again.
    if subscription_status in DUNNING_SUBSCRIPTION:
        if provision.past_due_since is None:
            provision.past_due_since = created
    elif subscription_status in LIVE_SUBSCRIPTION:
        provision.past_due_since = None


def _move(db: Session, provision: Provision, target: str) -> str:
    previous = provision.status
    if target == ProvisionStatus.CANCELLED.value:
        # Release Zapmail seats and the rest: vendors keep billing until told (docs/market.md 3.2).
        outcome = cancel_order(
            db,
            provision,
            reason=SUBSCRIPTION_ENDED_REASON,
            key=f"subscription-ended:{provision.id}:{provision.stripe_subscription_id}",
        )
        return f"{previous}->{target}" if outcome.startswith("cancelled") else outcome
    provision.status = target
    if target == ProvisionStatus.PAST_DUE.value:
        provision.status_reason = PAST_DUE_REASON
    elif previous == ProvisionStatus.PAST_DUE.value:
        provision.status_reason = None
    return f"{previous}->{target}"


def charge_refunded(db: Session, charge: Any) -> str:
    """A charge was refunded (``charge`` as read from Stripe): a full refund cancels the order."""
    provision = _provision_for_customer(db, charge)
    if provision is None:
        return "unknown_customer"
    if not getattr(charge, "refunded", False):
        # Partial: the order keeps running; the refund is in the event row for the admins.
        return "partial_refund_recorded"
    return cancel_order(db, provision, reason=REFUNDED_REASON, key=f"refunded:{charge.id}")


def dispute_closed(db: Session, dispute_status: str, charge: Any) -> str:
    """A dispute closed; lost (the money went back to the cardholder) cancels the order."""
    if dispute_status != "lost":
        return f"dispute_{dispute_status or 'closed'}_recorded"
    provision = _provision_for_customer(db, charge)
    if provision is None:
        return "unknown_customer"
    return cancel_order(db, provision, reason=DISPUTE_LOST_REASON, key=f"dispute-lost:{charge.id}")


def _provision_for_customer(db: Session, charge: Any) -> Provision | None:
    customer = id_of(getattr(charge, "customer", None))
    if not customer:
        return None
    return db.scalar(select(Provision).where(Provision.stripe_customer_id == customer))


def invoice_event(db: Session, event_type: str, invoice: Any, created: datetime) -> str:
    """Handle invoice.paid / invoice.payment_failed for upgrades and renewals."""
    meta = metadata_of(invoice)
    replacement_id = as_int(meta.get("replacement_id"))
    if meta.get("kind") == "replacement" and replacement_id is not None:
        return _replacement_invoice(db, event_type, invoice, replacement_id)
    upgrade_id = as_int(meta.get("upgrade_id"))
    if upgrade_id is not None:
        return _upgrade_fee_invoice(db, event_type, invoice, upgrade_id)
    subscription_id = None
    sub_meta: dict[str, str] = {}
    parent = getattr(invoice, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent else None
    if details is not None:
        subscription_id = id_of(details.subscription)
        sub_meta = metadata_of(details)
    if getattr(invoice, "billing_reason", None) == "subscription_update":
        upgrade = db.scalar(
            select(Upgrade).where(Upgrade.stripe_proration_invoice_id == invoice.id)
        )
        # The subscription's metadata (snapshotted on its invoices) names the upgrade too, so an
        # invoice that arrives before the portal stored its id still finds it.
        named = as_int(sub_meta.get("upgrade_id"))
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


def _replacement_invoice(db: Session, event_type: str, invoice: Any, replacement_id: int) -> str:
    """A burned-domain replacement's one-time invoice: paid starts its run, at most once."""
    replacement = db.get(DomainReplacement, replacement_id)
    if replacement is None or replacement.stripe_invoice_id not in (None, invoice.id):
        return "unknown_replacement"
    if id_of(getattr(invoice, "customer", None)) != replacement.provision.stripe_customer_id:
        return "unknown_replacement"
    if event_type == "invoice.payment_failed":
        if replacement.status == ReplacementStatus.PENDING_PAYMENT.value:
            replacement.status_reason = REPLACEMENT_FEE_FAILED
        return "replacement_fee_failed"
    return replacements.mark_paid(db, replacement, invoice.id)


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
    # Started after the commit by the outbox sender; the flow run id lands on the upgrade then.
    outbox.enqueue(
        db,
        key=upgrade_key(upgrade.id),
        deployment=UPGRADE_DEPLOYMENT,
        parameters={"upgrade_id": upgrade.id},
    )
    return "upgrade_started"
