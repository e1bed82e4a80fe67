"""A provisioning run's lifecycle in the app DB: start (claim + plan), finish (active), failure.

These touch only the app DB and Prefect; vendor work lives in the per-vendor task modules, run
claims in tasks/claims.py, mailbox planning in tasks/mailbox_plan.py, artifacts in
tasks/summaries.py.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import update

from core.db import utcnow
from core.models import Provision
from core.models import ProvisionStatus
from core.pipeline import PROVISION_STEPS
from core.pipeline import STEPS
from core.pipeline import failure_words
from tasks import guards
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks import summaries
from tasks.claims import NotStartableError
from tasks.claims import claim_provision
from tasks.errors import ProvisioningBlockedError
from tasks.mailbox_plan import ensure_mailbox_rows
from tasks.mailbox_plan import tier_domains
from tasks.policies import vendor_task_options

# A run may (re)start only from these states; anything else means "not paid" or "cancelled".
STARTABLE = {
    ProvisionStatus.PROVISIONING.value,
    ProvisionStatus.FAILED.value,
    ProvisionStatus.ACTIVE.value,
}


@task(name="start-provisioning", **vendor_task_options(None, retries=2))
def start_provisioning(provision_id: int) -> dict[str, Any]:
    """Claim the provision, mark it provisioning, create its step and mailbox rows; return the plan."""
    live = claim_provision(provision_id)
    if live is not None:
        return {"duplicate_of": live, "domains": [], "addresses": []}
    records.prepare_steps(provision_id, PROVISION_STEPS)
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None:
            raise NotStartableError(f"provision {provision_id} does not exist")
        if provision.status not in STARTABLE:
            raise NotStartableError(
                f"provision {provision_id} is {provision.status}; only paid provisions run"
            )
        if provision.status == ProvisionStatus.FAILED:
            # A compare-and-set: a cancellation landing meanwhile is never overwritten.
            session.execute(
                update(Provision)
                .where(
                    Provision.id == provision_id,
                    Provision.status == ProvisionStatus.FAILED.value,
                    *guards.claim_is_current(provision_id),
                )
                .values(status=ProvisionStatus.PROVISIONING.value, status_reason=None, remedy=None)
                .execution_options(synchronize_session=False)
            )
            session.refresh(provision)
        domains = tier_domains(provision)
        if len(domains) != provision.tier.domain_count:
            raise ProvisioningBlockedError(
                f"{len(domains)} domains chosen, tier needs {provision.tier.domain_count}",
                student_message="Your domain selection is incomplete; please choose your domains again.",
                remedy="another_domain",
            )
        addresses = ensure_mailbox_rows(
            session, provision, domains, provision.tier.mailboxes_per_domain
        )
        return {"domains": sorted(d.name for d in domains), "addresses": sorted(addresses)}


@task(name="finish-provisioning", **vendor_task_options(None, retries=2))
def finish_provisioning(provision_id: int, step_key: str = "finish") -> dict[str, Any]:
    """Mark the provision active, publish the run's summary artifact, queue the notification.

    Only a current run finishes, and only from a state it may finish from (a compare-and-set):
    a cancelled order stays cancelled and gets no "ready" email (StaleRunError instead).
    """
    guards.ensure_current(provision_id)
    with records.step(provision_id, step_key):
        with runtime.db() as session:
            if not _activate(session, provision_id):
                raise guards.StaleRunError(
                    f"provision {provision_id} was cancelled or claimed by another run; "
                    "it is not activated"
                )
            provision = session.get(Provision, provision_id)
            assert provision is not None
            summary = summaries.provision_summary(provision)
            key = notifications.queue_for_student(
                session,
                provision,
                key=f"provision-active:{provision_id}",
                subject="Your outbound infrastructure is ready",
                body=notifications.ready_email(
                    provision, summary, portal_url=runtime.settings().public_url
                ),
            )
    create_markdown_artifact(
        key=f"provision-{provision_id}",
        markdown=summaries.provision_markdown(summary),
        description=f"Provision {provision_id}: what was set up",
    )
    # After the commit above; an email that cannot go now is sent by the sweeper.
    notifications.deliver_quietly([key])
    return {"provision_id": provision_id, "status": "active", "domains": summary["domains"]}


# A run finishes a provision it is setting up (or re-running while active); a past-due one
# keeps saying so. Everything else (cancelled above all) is not this run's to change.
ACTIVATE_FROM = (ProvisionStatus.PROVISIONING.value, ProvisionStatus.ACTIVE.value)
# A run's failure is recorded over these only: never over cancelled (terminal) or unpaid.
FAIL_FROM = (
    ProvisionStatus.PROVISIONING.value,
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.FAILED.value,
)


def _activate(session: Any, provision_id: int) -> bool:
    """Compare-and-set the provision to active (past-due stays past-due); False if not ours."""
    now = utcnow()
    clearing = {"waiting_for": None, "waiting_since": None}
    won = session.execute(
        update(Provision)
        .where(
            Provision.id == provision_id,
            Provision.status.in_(ACTIVATE_FROM),
            *guards.claim_is_current(provision_id),
        )
        .values(
            status=ProvisionStatus.ACTIVE.value,
            activated_at=func.coalesce(Provision.activated_at, now),
            status_reason=None,
            remedy=None,
            **clearing,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        won = session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.status == ProvisionStatus.PAST_DUE.value,
                *guards.claim_is_current(provision_id),
            )
            .values(activated_at=func.coalesce(Provision.activated_at, now), **clearing)
            .execution_options(synchronize_session=False)
        ).rowcount
    return won == 1


def mark_provision_failed(
    provision_id: int,
    exc: BaseException | None,
    reason: str,
    flow_run_id: str | None = None,
) -> None:
    """Record a run's failure for good: the failing step, plain words, and the remedy.

    A compare-and-set: only a provision being set up (or re-run) is marked failed, only while
    the failed run (``flow_run_id``, when known) still holds it and this process's claim is
    current. A stale run (StaleRunError) or a refused start changes nothing.
    """
    if isinstance(exc, NotStartableError | guards.StaleRunError):
        return  # nothing of ours ran, or a newer run / the cancellation owns the story
    # Only this pipeline's steps: an upgrade's failed steps are that upgrade's story.
    failed_step = records.fail_running_steps(
        provision_id, reason, PROVISION_STEPS
    ) or records.first_failed_step(provision_id, PROVISION_STEPS)
    message = (
        exc.student_message
        if isinstance(exc, ProvisioningBlockedError)
        else failure_words(failed_step or "", "Setup stopped.")
    )
    # The failed run's story only while it (or nobody) holds the provision.
    holder = (
        []
        if flow_run_id is None
        else [
            or_(
                Provision.current_flow_run_id.is_(None),
                Provision.current_flow_run_id == flow_run_id,
            )
        ]
    )
    queued: list[str] = []
    with runtime.db() as session:
        won = session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.status.in_(FAIL_FROM),
                *holder,
                *guards.claim_is_current(provision_id),
            )
            .values(
                status=ProvisionStatus.FAILED.value,
                status_reason=f"{failed_step or 'setup'}: {message}",
                remedy=exc.remedy if isinstance(exc, ProvisioningBlockedError) else None,
                waiting_for=None,
                waiting_since=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return
        provision = session.get(Provision, provision_id)
        assert provision is not None
        queued = notifications.queue_failure(
            session,
            provision,
            key=f"provision-failed:{provision_id}:{provision.current_flow_run_id}:{failed_step}",
            student_subject="Your outbound setup needs attention",
            student_body=notifications.failure_email(
                provision,
                message,
                step_title=STEPS[failed_step].title if failed_step in STEPS else None,
                portal_url=runtime.settings().public_url,
            ),
            admin_detail=f"Failed step: {failed_step or 'setup'}\nReason: {reason}\n"
            f"Error: {records.technical_detail(exc) if exc else 'none recorded'}",
        )
    # After the commit: the failure is recorded even if no email can go out now.
    notifications.deliver_quietly(queued)
