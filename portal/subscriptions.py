"""Turning Stripe subscription and invoice facts into provision and upgrade state.

Subscription events mirror the subscription's status onto its provision (never starting
provisioning: only a paid checkout does, see portal/fulfilment.py), ignoring events older than
the state already applied. Invoice events pay upgrades (two invoices each) and renewals.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from portal import orchestration
from portal.fulfilment import as_int
from portal.fulfilment import id_of
from portal.fulfilment import metadata_of

log = logging.getLogger(__name__)

LIVE_SUBSCRIPTION = {"active", "trialing"}
LATE_SUBSCRIPTION = {"past_due", "unpaid", "paused"}
ENDED_SUBSCRIPTION = {"canceled", "incomplete_expired"}

PAST_DUE_REASON = "Your last payment failed. Update your card in Billing to keep your mailboxes."


def cancel_key(provision: Provision) -> str:
    """One cancellation run per provision and subscription, whoever asks first (admin or Stripe)."""
    return f"cancel:{provision.id}:{provision.stripe_subscription_id or 'none'}"


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
    meta = metadata_of(invoice)
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
