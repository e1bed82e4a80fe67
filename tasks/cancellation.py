"""Cancellation: stop what costs money or reputation, keep the student's data and access.

Every task here only switches things off; none buys or creates anything at a vendor. Each one
reads the vendor's current state first and changes only what is still on, so a rerun or a
retry from the Prefect UI is harmless. Vendor calls run under the provision's lock, so a
purchase still in flight finishes (and shows up in the listings) before anything is read.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect import task
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Cancelled
from prefect.states import Cancelling
from sqlalchemy import select

from core.db import utcnow
from core.models import AuditLog
from core.models import Domain
from core.models import DomainReplacement
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import ReplacementStatus
from core.models import Upgrade
from core.models import UpgradeStatus
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks.errors import PipelineError
from tasks.locks import provision_lock
from tasks.policies import vendor_task_options
from tasks.switch_off import pause_warming
from tasks.switch_off import schedule_removals
from tasks.switch_off import stop_renewals

CANCEL_STEPS: tuple[str, ...] = (
    "cancel:stop_runs",
    "cancel:pause_warmup",
    "cancel:remove_mailboxes",
    "cancel:stop_renewal",
    "cancel:finish",
)
# The portal starts this flow inside the transaction that marks the provision cancelled; give
# that commit a moment to land before concluding the provision is not cancelled at all.
CONFIRM_WAIT_S = 30.0
# How long a live provisioning or upgrade run gets to stop after being asked to cancel.
STOP_WAIT_S = 120.0
POLL_S = 1.0
LIVE_UPGRADES = (UpgradeStatus.PENDING_PAYMENT.value, UpgradeStatus.PROVISIONING.value)
# A failed replacement is retried, never requested again: it is cancelled with its order too.
LIVE_REPLACEMENTS = (
    ReplacementStatus.PENDING_PAYMENT.value,
    ReplacementStatus.PROVISIONING.value,
    ReplacementStatus.FAILED.value,
)


class NotCancelledError(PipelineError):
    """The provision is not cancelled: releasing its resources would hurt a paying student."""

    student_message = "Nothing was changed."


@task(name="confirm-cancelled", **vendor_task_options(None, retries=0))
def confirm_cancelled(provision_id: int) -> str:
    """Check the provision is cancelled (waiting briefly for the portal's commit); return the student."""
    deadline = time.monotonic() + CONFIRM_WAIT_S
    while True:
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            if provision is None:
                raise NotCancelledError(f"provision {provision_id} does not exist")
            if provision.status == ProvisionStatus.CANCELLED:
                # A suspended provisioning run must no longer be resumed by the sweeper.
                provision.waiting_for = provision.waiting_since = None
                student = provision.user.email
                break
            status = provision.status
        if time.monotonic() > deadline:
            raise NotCancelledError(
                f"provision {provision_id} is {status}, not cancelled; nothing was released"
            )
        time.sleep(POLL_S)
    records.prepare_steps(provision_id, CANCEL_STEPS)
    return student


@task(name="stop-live-runs", **vendor_task_options(None))
def stop_live_runs(provision_id: int, step_key: str = "cancel:stop_runs") -> list[str]:
    """Cancel the provision's live provisioning and upgrade runs, wait until they are final.

    A suspended run is cancelled at once; a running one is asked to cancel (its worker kills
    the process) and, if it has not stopped after ``STOP_WAIT_S``, is forced to Cancelled.
    Unfinished upgrades are marked cancelled. Returns the ids of the runs that were stopped.
    """
    me = str(flow_run.id) if flow_run.id else None
    with records.step(provision_id, step_key) as details:
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            assert provision is not None
            run_ids = {provision.current_flow_run_id} | {
                u.flow_run_id for u in provision.upgrades if u.status in LIVE_UPGRADES
            }
            run_ids |= set(
                session.scalars(
                    select(DomainReplacement.flow_run_id).where(
                        DomainReplacement.provision_id == provision_id,
                        DomainReplacement.status.in_(LIVE_REPLACEMENTS),
                    )
                )
            )
        live = [r for r in sorted(filter(None, run_ids)) if r != me and not _is_final(r)]
        reason = "The subscription ended: the order was cancelled."
        with get_client(sync_client=True) as client:
            for run_id in live:
                state = client.read_flow_run(UUID(run_id)).state
                # Only a running run has a process for its worker to stop; a suspended or
                # scheduled one is cancelled outright so that it never starts again.
                running = state is not None and state.is_running()
                new_state = Cancelling if running else Cancelled
                client.set_flow_run_state(UUID(run_id), new_state(message=reason), force=True)
            deadline = time.monotonic() + STOP_WAIT_S
            while live and any(not _is_final(r) for r in live):
                if time.monotonic() > deadline:
                    for run_id in live:
                        if not _is_final(run_id):
                            client.set_flow_run_state(
                                UUID(run_id), Cancelled(message=reason), force=True
                            )
                    details["forced"] = True
                    break
                time.sleep(POLL_S)
        cancelled_upgrades = _cancel_upgrades(provision_id)
        details["stopped_runs"] = live
        details["cancelled_upgrades"] = cancelled_upgrades
        details["cancelled_replacements"] = _cancel_replacements(provision_id)
        return live


def _is_final(flow_run_id: str) -> bool:
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except (ObjectNotFound, ValueError):
        return True  # unknown to this server: nothing live
    return state is None or state.is_final()


def _cancel_upgrades(provision_id: int) -> list[int]:
    with runtime.db() as session:
        upgrades = session.scalars(
            select(Upgrade).where(
                Upgrade.provision_id == provision_id, Upgrade.status.in_(LIVE_UPGRADES)
            )
        ).all()
        for upgrade in upgrades:
            upgrade.status = UpgradeStatus.CANCELLED.value
            upgrade.status_reason = "The subscription ended before the upgrade finished."
        return [u.id for u in upgrades]


def _cancel_replacements(provision_id: int) -> list[int]:
    with runtime.db() as session:
        rows = session.scalars(
            select(DomainReplacement).where(
                DomainReplacement.provision_id == provision_id,
                DomainReplacement.status.in_(LIVE_REPLACEMENTS),
            )
        ).all()
        for row in rows:
            row.status = ReplacementStatus.CANCELLED.value
            row.status_reason = "The subscription ended before the replacement finished."
        return [r.id for r in rows]


@task(name="pause-warmup-for-cancellation", **vendor_task_options(None))
def pause_warmup(provision_id: int, step_key: str = "cancel:pause_warmup") -> int:
    """Switch warmup off for every account still warming in the student's PlusVibe workspace."""
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        with runtime.db() as session:
            workspace_id = session.get(Provision, provision_id).plusvibe_workspace_id  # type: ignore[union-attr]
        if not workspace_id:
            details["paused"] = 0
            return 0
        # The workspace, not our rows, is the truth: an account exported just before the
        # cancellation may not be recorded yet.
        paused = pause_warming(workspace_id)
        with runtime.db() as session:
            for row in _mailboxes(session, provision_id):
                row.warmup_enabled = False
        details["paused"] = paused
        return paused


@task(name="schedule-mailbox-removal", **vendor_task_options(None))
def schedule_mailbox_removal(provision_id: int, step_key: str = "cancel:remove_mailboxes") -> int:
    """Ask Zapmail to remove the workspace's mailboxes at the next renewal (not scheduled yet)."""
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        workspace_id = _zapmail_workspace(provision_id)
        if workspace_id is None:
            details["scheduled"] = 0
            return 0
        todo, remote = schedule_removals(workspace_id)
        now = utcnow()
        with runtime.db() as session:
            for row in _mailboxes(session, provision_id):
                if row.address in remote:
                    row.removal_scheduled_at = row.removal_scheduled_at or now
                    row.zapmail_mailbox_id = row.zapmail_mailbox_id or remote[row.address]
        details["scheduled"] = len(todo)
        details["mailboxes"] = len(remote)
        return len(todo)


@task(name="stop-domain-renewal", **vendor_task_options(None))
def stop_domain_renewal(provision_id: int, step_key: str = "cancel:stop_renewal") -> int:
    """Turn auto-renew off for every domain in the workspace that still renews."""
    with records.step(provision_id, step_key) as details, provision_lock(provision_id):
        workspace_id = _zapmail_workspace(provision_id)
        if workspace_id is None:
            details["renewal_stopped"] = 0
            return 0
        stopped, names = stop_renewals(workspace_id)
        with runtime.db() as session:
            for row in session.scalars(select(Domain).where(Domain.provision_id == provision_id)):
                if row.name in names:
                    row.auto_renew = False
        details["renewal_stopped"] = stopped
        details["domains"] = len(names)
        return stopped


@task(name="finish-cancellation", **vendor_task_options(None, retries=2))
def finish_cancellation(
    provision_id: int, outcome: dict[str, Any], step_key: str = "cancel:finish"
) -> list[str]:
    """Record the cancellation (audit row, step), queue the student's email; return its keys."""
    with records.step(provision_id, step_key) as details, runtime.db() as session:
        provision = session.get(Provision, provision_id)
        assert provision is not None
        # The HeyReach list is the student's data: kept, and said so in the record.
        outcome = {**outcome, "heyreach_list_kept": provision.heyreach_list_id}
        details.update(outcome)
        audited = session.scalar(
            select(AuditLog.id).where(
                AuditLog.action == "provision_resources_released",
                AuditLog.target_type == "provision",
                AuditLog.target_id == provision_id,
            )
        )
        if audited is None:
            session.add(
                AuditLog(
                    action="provision_resources_released",
                    target_type="provision",
                    target_id=provision_id,
                    details=outcome,
                )
            )
        key = notifications.queue_for_student(
            session,
            provision,
            key=f"provision-cancelled:{provision_id}",
            subject="Your outbound subscription has ended",
            body="Your subscription has ended. Warmup is switched off, your domains will not "
            "renew and your mailboxes will be removed at the end of the period you paid for. "
            "You can still sign in to see your dashboard and your data.",
        )
        return [key]


def _zapmail_workspace(provision_id: int) -> str | None:
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        return provision.zapmail_workspace_id if provision else None


def _mailboxes(session: Any, provision_id: int) -> list[Mailbox]:
    return list(
        session.scalars(
            select(Mailbox)
            .join(Domain)
            .where(Domain.provision_id == provision_id)
            .order_by(Mailbox.id)
        )
    )
