"""Bookkeeping of a burned-domain replacement run: start (checks, claim, plan), finish, failure.

These touch only the app DB and Prefect; the vendor work reuses the provisioning tasks with the
replacement's one new domain, the old domain's senders and its own step keys
(core.pipeline.replacement_step_key); retiring the old domain is tasks/retire_domain.py. The
provision stays active throughout: its other domains keep sending.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from core.db import utcnow
from core.models import DomainReplacement
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import ReplacementStatus
from core.pipeline import REPLACEMENT_STEPS
from core.pipeline import replacement_step_key
from tasks import guards
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks import summaries
from tasks.claims import NotStartableError
from tasks.claims import claim_provision
from tasks.claims import run_is_final
from tasks.errors import PipelineError
from tasks.mailbox_plan import successor_mailbox_rows
from tasks.policies import vendor_task_options

# The account's workspaces must exist and it must not be cancelled. The request needs an active
# account (core/replacements.py); a paid one still runs if the account fell past due meanwhile,
# and an account another run holds (an upgrade) makes this run wait its turn (busy), not refuse.
REPLACEABLE = {
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.PAST_DUE.value,
}
# A replacement that may run: paid (or included) and started, or failed and retried.
RUNNABLE = {ReplacementStatus.PROVISIONING.value, ReplacementStatus.FAILED.value}


class ReplacementBusyError(PipelineError):
    """Another live run (provisioning, an upgrade, another replacement) holds the provision."""

    student_message = (
        "Another setup run on your account is still in progress; your domain replacement "
        "continues after it."
    )


def step_keys(replacement_id: int) -> list[str]:
    """The mirror keys of a replacement's steps, in pipeline order."""
    return [replacement_step_key(replacement_id, step) for step in REPLACEMENT_STEPS]


def _refusal(replacement: DomainReplacement | None, replacement_id: int) -> str | None:
    """Why the replacement may not run, or None when it may."""
    if replacement is None:
        return f"replacement {replacement_id} does not exist"
    unpaid = replacement.paid_at is None or (
        replacement.payment == "charged" and not replacement.stripe_invoice_id
    )
    if replacement.status == ReplacementStatus.PENDING_PAYMENT or unpaid:
        return f"replacement {replacement_id} is not paid; only paid or included replacements run"
    if replacement.status not in RUNNABLE:
        return f"replacement {replacement_id} is {replacement.status}"
    provision = replacement.provision
    if provision.status not in REPLACEABLE:
        return f"provision {provision.id} is {provision.status}; only a set-up account replaces"
    old = replacement.old_domain
    if old.provision_id != provision.id or old.purchase_state != PurchaseState.PURCHASED:
        return f"replacement {replacement_id}: {old.name} is not a bought domain of the order"
    if replacement.new_domain.provision_id != provision.id:
        return f"replacement {replacement_id}: the new domain belongs to another order"
    return None


@task(name="start-replacement", **vendor_task_options(None, retries=2))
def start_replacement(replacement_id: int) -> dict[str, Any]:
    """Check the replacement is paid or included, claim its provision, create the rows; the plan."""
    with runtime.db() as session:
        replacement = session.get(DomainReplacement, replacement_id)
        if replacement is not None and replacement.status == ReplacementStatus.COMPLETED:
            # A rerun of a finished replacement: nothing to do, and nothing to spend.
            return {"provision_id": replacement.provision_id, "completed": True}
        refusal = _refusal(replacement, replacement_id)
        if refusal is not None:
            raise NotStartableError(refusal)
        assert replacement is not None
        provision_id, previous_run = replacement.provision_id, replacement.flow_run_id
    live = claim_provision(provision_id)
    if live is not None:
        if live == previous_run:
            # A second run of this same replacement while the first is live: step aside.
            return {"provision_id": provision_id, "duplicate_of": live}
        raise ReplacementBusyError(f"provision {provision_id} is held by live run {live}")
    records.prepare_steps(provision_id, step_keys(replacement_id))
    with runtime.db() as session:
        replacement = session.get(DomainReplacement, replacement_id)
        # Checked again under the claim: a cancellation may have landed meanwhile.
        refusal = _refusal(replacement, replacement_id)
        if refusal is not None:
            raise NotStartableError(refusal)
        assert replacement is not None
        epoch = _claim_replacement(session, replacement_id)
        if epoch is None:
            raise NotStartableError(f"replacement {replacement_id} changed state while starting")
        guards.remember_replacement_claim(replacement_id, epoch, provision_id)
        session.refresh(replacement)
        old, new = replacement.old_domain, replacement.new_domain
        addresses = successor_mailbox_rows(session, replacement.provision, old, new)
        return {
            "provision_id": provision_id,
            "old_domain": old.name,
            "domains": [new.name],
            "addresses": sorted(addresses),
        }


def _claim_replacement(session: Any, replacement_id: int) -> int | None:
    """Compare-and-set the replacement to provisioning under this run, bumping its epoch."""
    me = str(flow_run.id) if flow_run.id else None
    won = session.execute(
        update(DomainReplacement)
        .where(
            DomainReplacement.id == replacement_id,
            DomainReplacement.status.in_(RUNNABLE),
            DomainReplacement.paid_at.is_not(None),
        )
        .values(
            status=ReplacementStatus.PROVISIONING.value,
            status_reason=None,
            flow_run_id=me if me else DomainReplacement.flow_run_id,
            run_epoch=DomainReplacement.run_epoch + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return None
    return int(
        session.scalar(
            select(DomainReplacement.run_epoch).where(DomainReplacement.id == replacement_id)
        )
        or 0
    )


def _epoch_is_ours(replacement_id: int) -> list[Any]:
    mine = guards.claimed_replacement_epoch(replacement_id)
    return [] if mine is None else [DomainReplacement.run_epoch == mine]


@task(name="finish-replacement", **vendor_task_options(None, retries=2))
def finish_replacement(replacement_id: int) -> dict[str, Any]:
    """Mark the replacement done, publish the summary, tell the student.

    Compare-and-set on the replacement (still provisioning under our epoch) and on the provision
    (not cancelled): a cancelled order or a superseded run changes nothing (StaleRunError).
    """
    provision_id = guards.ensure_replacement_current(replacement_id)
    with records.step(provision_id, replacement_step_key(replacement_id, "finish")):
        with runtime.db() as session:
            replacement = session.get(DomainReplacement, replacement_id)
            assert replacement is not None
            if replacement.status != ReplacementStatus.COMPLETED and not _complete(
                session, replacement
            ):
                raise guards.StaleRunError(
                    f"replacement {replacement_id} was cancelled or claimed by another run; "
                    "it is not completed"
                )
            session.refresh(replacement)
            summary = summaries.replacement_summary(replacement)
            queued = notifications.queue_for_student(
                session,
                replacement.provision,
                key=f"replacement-complete:{replacement_id}",
                subject="Your new domain is ready",
                body=f"{summary['new_domain']} replaces {summary['old_domain']}: its "
                f"{summary['mailbox_count']} mailboxes have the same senders and are warming "
                f"up. {summary['old_domain']} no longer sends, and it and its mailboxes are "
                "removed at renewal, so they stop costing.",
            )
    notifications.deliver_quietly([queued])
    create_markdown_artifact(
        key=f"replacement-{replacement_id}",
        markdown=summaries.replacement_markdown(summary),
        description=f"Replacement {replacement_id} of provision {provision_id}: what changed",
    )
    return {
        "replacement_id": replacement_id,
        "provision_id": provision_id,
        "status": "completed",
        "old_domain": summary["old_domain"],
        "new_domain": summary["new_domain"],
    }


def _complete(session: Any, replacement: DomainReplacement) -> bool:
    """The replacement's compare-and-set, with the provision's wait cleared; False if lost."""
    provision_id = replacement.provision_id
    still_on = session.execute(
        update(Provision)
        .where(Provision.id == provision_id, Provision.status.in_(REPLACEABLE))
        .values(waiting_for=None, waiting_since=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if still_on != 1:
        return False
    done = session.execute(
        update(DomainReplacement)
        .where(
            DomainReplacement.id == replacement.id,
            DomainReplacement.status == ReplacementStatus.PROVISIONING.value,
            *_epoch_is_ours(replacement.id),
        )
        .values(
            status=ReplacementStatus.COMPLETED.value,
            completed_at=func.coalesce(DomainReplacement.completed_at, utcnow()),
            status_reason=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        session.rollback()
        return False
    return True


def mark_replacement_failed(
    replacement_id: int, exc: BaseException | None, reason: str, flow_run_id: str | None
) -> None:
    """Record a replacement run's failure: the failing step, a notice; the account stays as it is.

    The provision's other domains keep sending (it was never taken out of active); a run refused
    before it started, or one a cancellation or newer run superseded, changes nothing.
    """
    if isinstance(exc, NotStartableError | guards.StaleRunError):
        return
    with runtime.db() as session:
        replacement = session.get(DomainReplacement, replacement_id)
        if replacement is None or replacement.status in (
            ReplacementStatus.COMPLETED,
            ReplacementStatus.CANCELLED,
            ReplacementStatus.PENDING_PAYMENT,
        ):
            return
        provision_id, holder = replacement.provision_id, replacement.provision.current_flow_run_id
        old_name = replacement.old_domain.name
    # Asked before the session below: no DB transaction waits on the Prefect API.
    other_live = holder not in (None, flow_run_id) and not run_is_final(holder)
    keys = step_keys(replacement_id)
    step, message = records.stopped_at(
        provision_id, reason, keys, exc, "The domain replacement stopped."
    )
    with runtime.db() as session:
        replacement = session.get(DomainReplacement, replacement_id)
        assert replacement is not None
        values: dict[str, Any] = {
            "status": ReplacementStatus.FAILED.value,
            "status_reason": f"{step}: {message}",
        }
        if flow_run_id and (not other_live or replacement.flow_run_id is None):
            values["flow_run_id"] = flow_run_id  # what the admin page's retry reschedules
        # Compare-and-set: a cancelled or completed replacement, or a newer claim, stays as is.
        won = session.execute(
            update(DomainReplacement)
            .where(
                DomainReplacement.id == replacement_id,
                DomainReplacement.status.in_(RUNNABLE),
                *_epoch_is_ours(replacement_id),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1 or other_live:
            return
        provision = session.get(Provision, provision_id)
        assert provision is not None
        provision.waiting_for = provision.waiting_since = None
        queued = notifications.queue_failure(
            session,
            provision,
            key=f"replacement-failed:{replacement_id}:{flow_run_id}:{step}",
            student_subject="Your domain replacement needs attention",
            student_body=f"{message} Your other domains and mailboxes keep working; we will "
            f"finish replacing {old_name} and keep you posted.",
            admin_detail=f"Replacement {replacement_id} failed at {step}\nReason: {reason}",
        )
    # After the commit: the failure is recorded even if no email can go out now.
    notifications.deliver_quietly(queued)
