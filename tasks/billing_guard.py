"""Billing that must stop: dunning past the grace period, and cancelled orders still billing.

- Dunning: a subscription unpaid or paused for longer than ``APP_DUNNING_GRACE_S`` cancels the
  order (the Stripe subscription, then the release of its vendor resources).
- A cancelled order whose Stripe subscription is still live gets it cancelled (refunds, lost
  disputes, an admin cancel whose Stripe call failed).
"""

from __future__ import annotations

from datetime import timedelta

import stripe
from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import select
from sqlalchemy import update

from clients.stripe import make_stripe_client
from core import outbox
from core.cancellation import request_cancellation
from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus
from tasks import notifications
from tasks import runtime
from tasks.outbox_sending import send_pending
from tasks.policies import vendor_task_options

DUNNING_REASON = (
    "Your subscription stayed unpaid past the grace period, so the order was cancelled."
)
ENDED_SUBSCRIPTION = {"canceled", "incomplete_expired"}


def _cancel_subscription(subscription_id: str) -> str:
    """Cancel a Stripe subscription now; return its status (``canceled``, also when it already was)."""
    client = make_stripe_client(runtime.settings())
    try:
        return str(client.v1.subscriptions.cancel(subscription_id).status)
    except stripe.InvalidRequestError as exc:
        if "canceled" in str(exc) or exc.code == "resource_missing":
            return "canceled"
        raise


@task(name="enforce-dunning", **vendor_task_options(None, retries=0))
def enforce_dunning(grace_s: float | None = None) -> list[int]:
    """Cancel orders whose subscription has been unpaid or paused longer than the grace period."""
    grace = timedelta(seconds=runtime.settings().dunning_grace_s if grace_s is None else grace_s)
    with runtime.db() as session:
        due = session.execute(
            select(Provision.id, Provision.stripe_subscription_id).where(
                Provision.past_due_since.is_not(None),
                Provision.past_due_since <= utcnow() - grace,
                Provision.status != ProvisionStatus.CANCELLED.value,
            )
        ).all()
    cancelled = []
    for provision_id, subscription_id in due:
        # Stripe first: the vendor resources are released only once billing has stopped.
        status = _cancel_subscription(subscription_id) if subscription_id else None
        with runtime.db() as session:
            if status is not None:
                session.execute(
                    update(Provision)
                    .where(Provision.id == provision_id)
                    .values(subscription_status=status)
                    .execution_options(synchronize_session=False)
                )
            if request_cancellation(session, provision_id, reason=DUNNING_REASON):
                provision = session.get(Provision, provision_id)
                if provision is not None:
                    notifications.queue_for_student(
                        session,
                        provision,
                        key=f"dunning-cancelled:{provision_id}",
                        subject="Your outbound infrastructure order was cancelled",
                        body=f"{DUNNING_REASON}\n\nYour mailboxes stop warming up and are "
                        "removed; no further charges are made.",
                    )
                cancelled.append(provision_id)
            keys = outbox.unsent_keys(session)
        send_pending(keys=[k for k in keys if k.startswith(f"cancel:{provision_id}:")])
    return cancelled


@task(name="stop-billing-cancelled", **vendor_task_options(None, retries=0))
def stop_billing_cancelled(limit: int = 50) -> list[int]:
    """Cancel the Stripe subscription of every cancelled order that still has a live one."""
    with runtime.db() as session:
        rows = session.execute(
            select(Provision.id, Provision.stripe_subscription_id)
            .where(
                Provision.status == ProvisionStatus.CANCELLED.value,
                Provision.stripe_subscription_id.is_not(None),
                Provision.subscription_status.is_(None)
                | Provision.subscription_status.not_in(sorted(ENDED_SUBSCRIPTION)),
            )
            .limit(limit)
        ).all()
    stopped = []
    for provision_id, subscription_id in rows:
        try:
            status = _cancel_subscription(subscription_id)
        except stripe.StripeError as exc:
            get_run_logger().warning("subscription %s not cancelled yet: %s", subscription_id, exc)
            continue
        with runtime.db() as session:
            session.execute(
                update(Provision)
                .where(Provision.id == provision_id)
                .values(subscription_status=status)
                .execution_options(synchronize_session=False)
            )
        stopped.append(provision_id)
    return stopped
