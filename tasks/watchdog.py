"""Tasks of the watchdog: no paid order sits without a live run or a named reason.

- Outbox rows the portal did not send within ``SEND_AFTER`` are sent here (same idempotency key).
- A paid order (a provision ``provisioning``, an upgrade ``provisioning``) whose run is missing
  or has ended without finishing the order, and that is not waiting on a vendor, is restarted:
  the run is retried in place (AwaitingRetry, as the Prefect UI's Retry, so the business-keyed
  caches resume it), or a new run is queued under a new key when there is no run to retry. After
  ``MAX_RESTARTS`` it is escalated: the order becomes ``failed`` with a reason and the admins are
  emailed.
- Dunning: a subscription unpaid or paused for longer than ``APP_DUNNING_GRACE_S`` cancels the
  order (the Stripe subscription, then the release of its vendor resources).
- A cancelled order whose Stripe subscription is still live gets it cancelled (refunds, lost
  disputes, an admin cancel whose Stripe call failed).
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any
from uuid import UUID

import stripe
from prefect import get_client
from prefect import task
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.states import AwaitingRetry
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from clients.stripe import make_stripe_client
from core import outbox
from core.cancellation import request_cancellation
from core.db import utcnow
from core.models import AuditLog
from core.models import OutboxMessage
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseAttempt
from core.models import Upgrade
from core.models import UpgradeStatus
from tasks import notifications
from tasks import purchase
from tasks import runtime
from tasks.locks import LockTimeoutError
from tasks.locks import provision_lock
from tasks.policies import vendor_task_options

# The portal's sender normally sends within a second; older unsent rows are this sender's.
SEND_AFTER = timedelta(seconds=30)
# A run that ended (or never appeared) this long ago without finishing its order is stalled.
STALL_AFTER = timedelta(minutes=3)
MAX_RESTARTS = 3
RESTART_ACTION = "watchdog_restart"
ESCALATED_REASON = (
    "Setup stopped unexpectedly and could not be restarted automatically. An instructor has "
    "been told and will finish it or refund you."
)
DUNNING_REASON = (
    "Your subscription stayed unpaid past the grace period, so the order was cancelled."
)
ENDED_SUBSCRIPTION = {"canceled", "incomplete_expired"}
# Prefect state types of a run that has ended.
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def perform(message: outbox.Message) -> str:
    """Start the message's deployment under its key (run_deployment is idempotent on the key)."""
    if message.kind != outbox.START_DEPLOYMENT:
        raise ValueError(f"unknown outbox message kind {message.kind!r}")
    run = run_deployment(
        message.deployment,
        parameters=message.parameters,
        idempotency_key=message.key,
        timeout=0,
        as_subflow=False,
    )
    return str(run.id)


def send_pending(
    *, created_before: datetime | None = None, keys: list[str] | None = None
) -> dict[str, str]:
    """Send the claimable outbox rows (those created before ``created_before``, or ``keys``)."""
    return outbox.send_due(runtime.db, perform, keys=keys, created_before=created_before)


@task(name="send-outbox", **vendor_task_options(None, retries=0))
def send_outbox(send_after_s: float = SEND_AFTER.total_seconds()) -> dict[str, str]:
    """Send the outbox rows the portal left unsent for ``send_after_s``; return {key: run id}."""
    return send_pending(created_before=utcnow() - timedelta(seconds=send_after_s))


# --- stalled paid orders ---------------------------------------------------------------------


def _run_state(flow_run_id: str) -> tuple[str, datetime | None] | None:
    """(state type, when it ended) of a run, or None when the server does not know it."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
    except (ObjectNotFound, ValueError):
        return None
    state = run.state
    kind = state.type.value if state is not None else "UNKNOWN"
    ended = run.end_time or (state.timestamp if state is not None else None)
    return kind, ended


def _unsent_targets() -> set[tuple[str, int]]:
    """(deployment, id) of every outbox row not sent yet: those orders have a start coming."""
    with runtime.db() as session:
        payloads = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.sent_at.is_(None))
        ).all()
    found = set()
    for payload in payloads:
        params = (payload or {}).get("parameters") or {}
        for name in ("provision_id", "upgrade_id"):
            if isinstance(params.get(name), int):
                found.add((name, params[name]))
    return found


def _last_sent_run(
    session: Any, name: str, target_id: int, deployment: str
) -> tuple[str | None, datetime | None]:
    rows = session.execute(
        select(OutboxMessage.payload, OutboxMessage.result, OutboxMessage.sent_at)
        .where(OutboxMessage.sent_at.is_not(None))
        .order_by(OutboxMessage.sent_at.desc())
    ).all()
    for payload, result, sent_at in rows:
        params = (payload or {}).get("parameters") or {}
        if (payload or {}).get("deployment") == deployment and params.get(name) == target_id:
            return result, sent_at
    return None, None


def _stalled(run_id: str | None, since: datetime | None, now: datetime) -> str | None:
    """Why the order's run counts as stalled ("missing", "failed", ...), or None if it is live."""
    if run_id is None:
        return "missing" if since is None or now - since > STALL_AFTER else None
    state = _run_state(run_id)
    if state is None:
        return "missing" if since is None or now - since > STALL_AFTER else None
    kind, ended = state
    if kind not in FINAL:
        return None  # scheduled, pending, running, paused (suspended): alive
    if ended is not None and now - ended < STALL_AFTER:
        return None  # just ended: its own failure hook may still be recording the outcome
    return kind.lower()


_DEPLOYMENT_OF = {"provision": outbox.PROVISION_DEPLOYMENT, "upgrade": outbox.UPGRADE_DEPLOYMENT}


def _candidate(
    session: Any,
    pending: set[tuple[str, int]],
    kind: str,
    target_id: int,
    run_id: str | None,
    paid_at: datetime | None,
) -> tuple[str, int, str | None, datetime | None] | None:
    """(kind, id, run to judge, since when) for one paid order, or None if its start is queued."""
    parameter = f"{kind}_id"
    if (parameter, target_id) in pending:
        return None
    sent_at = None
    if run_id is None:
        run_id, sent_at = _last_sent_run(session, parameter, target_id, _DEPLOYMENT_OF[kind])
    return kind, target_id, run_id, sent_at or paid_at


@task(name="find-stalled-orders", **vendor_task_options(None, retries=0))
def find_stalled(limit: int = 200) -> list[dict[str, Any]]:
    """Paid orders with no live run, no start queued and no vendor wait: what to restart."""
    now = utcnow()
    pending = _unsent_targets()
    found: list[dict[str, Any]] = []
    with runtime.db() as session:
        provisions = session.scalars(
            select(Provision)
            .where(
                Provision.status == ProvisionStatus.PROVISIONING.value,
                Provision.paid_at.is_not(None),
                Provision.waiting_for.is_(None),
            )
            .order_by(Provision.id)
            .limit(limit)
        ).all()
        candidates = [
            _candidate(session, pending, "provision", p.id, p.current_flow_run_id, p.paid_at)
            for p in provisions
        ]
        upgrades = session.scalars(
            select(Upgrade)
            .join(Provision, Provision.id == Upgrade.provision_id)
            .where(
                Upgrade.status == UpgradeStatus.PROVISIONING.value,
                Provision.waiting_for.is_(None),
                Provision.status != ProvisionStatus.CANCELLED.value,
            )
            .order_by(Upgrade.id)
            .limit(limit)
        ).all()
        candidates += [
            _candidate(session, pending, "upgrade", u.id, u.flow_run_id, u.paid_at)
            for u in upgrades
        ]
    # Prefect is asked outside the DB session: nothing is held open across those calls.
    for kind, target_id, run_id, since in filter(None, candidates):
        why = _stalled(run_id, since, now)
        if why is not None:
            found.append({"kind": kind, "id": target_id, "run_id": run_id, "why": why})
    return found


def _restarts(session: Any, kind: str, target_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action == RESTART_ACTION,
                AuditLog.target_type == kind,
                AuditLog.target_id == target_id,
            )
        )
        or 0
    )


def _retry_in_place(run_id: str) -> bool:
    """Reschedule an ended deployment run as AwaitingRetry; False if it cannot be retried."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
            if run.deployment_id is None:
                return False
            result = client.set_flow_run_state(
                UUID(run_id),
                state=AwaitingRetry(
                    message="Restarted by the watchdog: the order was not finished"
                ),
                force=True,
            )
    except (ObjectNotFound, ValueError):
        return False
    return result.status.value == "ACCEPT"


@task(name="restart-stalled-order", **vendor_task_options(None, retries=0))
def restart_or_escalate(stalled: dict[str, Any]) -> str:
    """Restart one stalled order (retry its run, or queue a new one); escalate after MAX_RESTARTS."""
    kind, target_id, run_id = stalled["kind"], int(stalled["id"]), stalled["run_id"]
    with runtime.db() as session:
        done = _restarts(session, kind, target_id)
    if done >= MAX_RESTARTS:
        return _escalate(kind, target_id, stalled["why"], done)
    how = "retried"
    if run_id is None or stalled["why"] == "missing" or not _retry_in_place(run_id):
        how = "new_run"
    with runtime.db() as session:
        queued = None
        if how == "new_run":
            message = (
                outbox.enqueue_restart(session, target_id)
                if kind == "provision"
                else outbox.enqueue_upgrade_restart(session, target_id)
            )
            queued = message.key
            # The old (lost or failed) run no longer holds the order: the new run claims it.
            _release_pointer(session, kind, target_id, run_id)
        session.add(
            AuditLog(
                action=RESTART_ACTION,
                target_type=kind,
                target_id=target_id,
                details={"why": stalled["why"], "run_id": run_id, "how": how, "queued": queued},
            )
        )
    if queued is not None:
        send_pending(keys=[queued])
    get_run_logger().warning("%s %s had no live run (%s): %s", kind, target_id, stalled["why"], how)
    return how


def _release_pointer(session: Any, kind: str, target_id: int, run_id: str | None) -> None:
    if kind == "provision":
        session.execute(
            update(Provision)
            .where(Provision.id == target_id, Provision.current_flow_run_id == run_id)
            .values(current_flow_run_id=None)
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            update(Upgrade)
            .where(Upgrade.id == target_id, Upgrade.flow_run_id == run_id)
            .values(flow_run_id=None)
            .execution_options(synchronize_session=False)
        )


def _escalate(kind: str, target_id: int, why: str, restarts: int) -> str:
    detail = (
        f"The watchdog restarted this {kind} {restarts} times and its run still ended without "
        f"finishing it (last: {why}). Look at the run in the Prefect UI, then retry or refund "
        "from the admin page."
    )
    with runtime.db() as session:
        if kind == "provision":
            provision_id = target_id
            moved = session.execute(
                update(Provision)
                .where(
                    Provision.id == target_id,
                    Provision.status == ProvisionStatus.PROVISIONING.value,
                )
                .values(status=ProvisionStatus.FAILED.value, status_reason=ESCALATED_REASON)
                .execution_options(synchronize_session=False)
            ).rowcount
        else:
            upgrade = session.get(Upgrade, target_id)
            provision_id = upgrade.provision_id if upgrade else 0
            moved = session.execute(
                update(Upgrade)
                .where(Upgrade.id == target_id, Upgrade.status == UpgradeStatus.PROVISIONING.value)
                .values(status=UpgradeStatus.FAILED.value, status_reason=ESCALATED_REASON)
                .execution_options(synchronize_session=False)
            ).rowcount
        if moved != 1:
            return "changed_meanwhile"
        provision = session.get(Provision, provision_id)
        if provision is not None:
            notifications.queue_failure(
                session,
                provision,
                key=f"watchdog-escalated:{kind}:{target_id}",
                student_subject="Your setup needs an instructor",
                student_body=ESCALATED_REASON,
                admin_detail=detail,
            )
    return "escalated"


# --- billing lifecycle -----------------------------------------------------------------------


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
