"""The watchdog's sweeps that keep promises moving: unsent outbox rows and orphaned purchases.

- Outbox rows the portal did not send within ``SEND_AFTER`` are sent here (same idempotency key).
- Unresolved purchase attempts of cancelled or failed orders are settled (they reserve wallet).

The watchdog flow (flows/watchdog.py) also runs tasks/stalled_orders.py (paid orders without a
live run) and tasks/billing_guard.py (dunning, billing of cancelled orders).
"""

from __future__ import annotations

from datetime import timedelta

from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import select

from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseAttempt
from tasks import purchase
from tasks import runtime
from tasks.locks import LockTimeoutError
from tasks.locks import provision_lock
from tasks.outbox_sending import send_pending
from tasks.policies import vendor_task_options

# The portal's sender normally sends within a second; older unsent rows are this sender's.
SEND_AFTER = timedelta(seconds=30)


@task(name="send-outbox", **vendor_task_options(None, retries=0))
def send_outbox(send_after_s: float = SEND_AFTER.total_seconds()) -> dict[str, str]:
    """Send the outbox rows the portal left unsent for ``send_after_s``; return {key: run id}."""
    return send_pending(created_before=utcnow() - timedelta(seconds=send_after_s))


# Settling needs the vendor's listing to have caught up: leave recent attempts to their runs.
ORPHAN_GRACE = timedelta(seconds=60)


@task(name="settle-orphaned-purchases", **vendor_task_options(None, retries=0))
def settle_orphaned_purchases(limit: int = 20) -> dict[int, dict[str, str]]:
    """Resolve unresolved purchase attempts of cancelled or failed orders (their reservations)."""
    settle = timedelta(seconds=runtime.settings().purchase_settle_s)
    before = utcnow() - settle - ORPHAN_GRACE
    with runtime.db() as session:
        provision_ids = list(
            session.scalars(
                select(PurchaseAttempt.provision_id)
                .join(Provision, Provision.id == PurchaseAttempt.provision_id)
                .where(
                    PurchaseAttempt.resolution.is_(None),
                    PurchaseAttempt.started_at < before,
                    Provision.status.in_(
                        [ProvisionStatus.CANCELLED.value, ProvisionStatus.FAILED.value]
                    ),
                )
                .distinct()
                .limit(limit)
            )
        )
    settled: dict[int, dict[str, str]] = {}
    for provision_id in provision_ids:
        try:
            # The purchase step holds the same lock: a retried run and this never interleave.
            with provision_lock(provision_id, timeout_s=5.0):
                settled[provision_id] = purchase.resolve_orphaned_attempts(provision_id)
        except LockTimeoutError:
            continue  # a run holds it and will reconcile them itself
        except Exception as exc:  # noqa: BLE001 - one order's vendor trouble must not stop the pass
            get_run_logger().warning("purchases of provision %s not settled: %s", provision_id, exc)
    return settled
