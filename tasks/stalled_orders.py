"""Paid orders without a live run: restart them, or after a few tries escalate with a reason.

A paid order (a provision, an upgrade or a domain replacement ``provisioning``) whose run is missing or
has ended without finishing the order, and that is not waiting on a vendor, is restarted: the
run is retried in place (AwaitingRetry, as the Prefect UI's Retry, so the business-keyed caches
resume it), or a new run is queued under a new key when there is no run to retry. After
``MAX_RESTARTS`` it is escalated: the order becomes ``failed`` with a reason and the admins are
emailed.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect import task
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.states import AwaitingRetry
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from core import outbox
from core.db import utcnow
from core.models import AuditLog
from core.models import DomainReplacement
from core.models import OutboxMessage
from core.models import Provision
from core.models import ProvisionStatus
from core.models import ReplacementStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from core.replacements import REPLACEMENT_DEPLOYMENT
from tasks import notifications
from tasks import runtime
from tasks.outbox_sending import send_pending
from tasks.policies import vendor_task_options

# A run that ended (or never appeared) this long ago without finishing its order is stalled.
STALL_AFTER = timedelta(minutes=3)
MAX_RESTARTS = 3
RESTART_ACTION = "watchdog_restart"
ESCALATED_REASON = (
    "Setup stopped unexpectedly and could not be restarted automatically. An instructor has "
    "been told and will finish it or refund you."
)
# Prefect state types of a run that has ended.
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


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
        for name in ("provision_id", "upgrade_id", "replacement_id"):
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


_DEPLOYMENT_OF = {
    "provision": outbox.PROVISION_DEPLOYMENT,
    "upgrade": outbox.UPGRADE_DEPLOYMENT,
    "replacement": REPLACEMENT_DEPLOYMENT,
}
# The run-holding rows of upgrades and replacements: (model, their "provisioning" status).
_RUN_ROWS: dict[str, tuple[Any, str]] = {
    "upgrade": (Upgrade, UpgradeStatus.PROVISIONING.value),
    "replacement": (DomainReplacement, ReplacementStatus.PROVISIONING.value),
}


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
        for kind, (model, running) in _RUN_ROWS.items():
            rows = session.scalars(
                select(model)
                .join(Provision, Provision.id == model.provision_id)
                .where(
                    model.status == running,
                    Provision.waiting_for.is_(None),
                    Provision.status != ProvisionStatus.CANCELLED.value,
                )
                .order_by(model.id)
                .limit(limit)
            ).all()
            candidates += [
                _candidate(session, pending, kind, r.id, r.flow_run_id, r.paid_at) for r in rows
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
            message = _enqueue_restart(session, kind, target_id)
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


def _enqueue_restart(session: Any, kind: str, target_id: int) -> OutboxMessage:
    """Queue a new run of the order under a new key (its first run's key is spent)."""
    if kind == "provision":
        return outbox.enqueue_restart(session, target_id)
    if kind == "upgrade":
        return outbox.enqueue_upgrade_restart(session, target_id)
    return outbox.enqueue_generation(
        session,
        prefix=f"restart:replacement:{target_id}",
        deployment=REPLACEMENT_DEPLOYMENT,
        parameters={"replacement_id": target_id},
    )


def _release_pointer(session: Any, kind: str, target_id: int, run_id: str | None) -> None:
    if kind == "provision":
        session.execute(
            update(Provision)
            .where(Provision.id == target_id, Provision.current_flow_run_id == run_id)
            .values(current_flow_run_id=None)
            .execution_options(synchronize_session=False)
        )
    else:
        model, _running = _RUN_ROWS[kind]
        session.execute(
            update(model)
            .where(model.id == target_id, model.flow_run_id == run_id)
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
            model, running = _RUN_ROWS[kind]
            row = session.get(model, target_id)
            provision_id = row.provision_id if row else 0
            # Both models spell "failed" the same; the provision itself is left as it is.
            moved = session.execute(
                update(model)
                .where(model.id == target_id, model.status == running)
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
