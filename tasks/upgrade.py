"""Bookkeeping of an upgrade run: start (checks, claim, plan), finish (tier, artifact), failure.

These touch only the app DB and Prefect; the vendor work reuses the provisioning tasks with the
upgrade's own domains, addresses and step keys (core.pipeline.upgrade_step_key).
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
from core.models import Domain
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import Upgrade
from core.models import UpgradeStatus
from core.pipeline import UPGRADE_STEPS
from core.pipeline import upgrade_step_key
from tasks import guards
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks import summaries
from tasks.claims import NotStartableError
from tasks.claims import claim_provision
from tasks.claims import run_is_final
from tasks.errors import PipelineError
from tasks.errors import ProvisioningBlockedError
from tasks.mailbox_plan import ensure_mailbox_rows
from tasks.policies import vendor_task_options

# The provision's infrastructure must exist (and not be cancelled) before it can grow.
UPGRADABLE = {
    ProvisionStatus.ACTIVE.value,
    ProvisionStatus.UPGRADING.value,
    ProvisionStatus.PAST_DUE.value,
}
# An upgrade that may run: paid and started, or failed and retried.
RUNNABLE = {
    UpgradeStatus.PENDING_PAYMENT.value,
    UpgradeStatus.PROVISIONING.value,
    UpgradeStatus.FAILED.value,
}


class ProvisionBusyError(PipelineError):
    """Another live run (provisioning or another upgrade) holds the provision."""

    student_message = (
        "Another setup run on your account is still in progress; your upgrade continues after it."
    )


def step_keys(upgrade_id: int) -> list[str]:
    """The mirror keys of an upgrade's steps, in pipeline order."""
    return [upgrade_step_key(upgrade_id, step) for step in UPGRADE_STEPS]


def _refusal(upgrade: Upgrade | None, upgrade_id: int) -> str | None:
    """Why the upgrade may not run, or None when it may."""
    if upgrade is None:
        return f"upgrade {upgrade_id} does not exist"
    if upgrade.status not in RUNNABLE:
        return f"upgrade {upgrade_id} is {upgrade.status}"
    if upgrade.fee_paid_at is None or upgrade.proration_paid_at is None:
        return f"upgrade {upgrade_id} is not paid; only paid upgrades run"
    provision = upgrade.provision
    if provision.status not in UPGRADABLE:
        return f"provision {provision.id} is {provision.status}; only a set-up account can grow"
    if provision.tier_id != upgrade.from_tier_id:
        return (
            f"provision {provision.id} is on tier {provision.tier_id}, "
            f"upgrade {upgrade_id} starts from tier {upgrade.from_tier_id}"
        )
    if upgrade.to_tier.domain_count <= upgrade.from_tier.domain_count:
        return f"upgrade {upgrade_id} adds no domains"
    return None


@task(name="start-upgrade", **vendor_task_options(None, retries=2))
def start_upgrade(upgrade_id: int) -> dict[str, Any]:
    """Check the upgrade is paid, claim its provision, mark both, create the rows; return the plan."""
    with runtime.db() as session:
        upgrade = session.get(Upgrade, upgrade_id)
        if upgrade is not None and upgrade.status == UpgradeStatus.COMPLETED:
            # A rerun of a finished upgrade: nothing to do, and nothing to spend.
            return {"provision_id": upgrade.provision_id, "completed": True}
        refusal = _refusal(upgrade, upgrade_id)
        if refusal is not None:
            raise NotStartableError(refusal)
        assert upgrade is not None
        provision_id, previous_run = upgrade.provision_id, upgrade.flow_run_id
    live = claim_provision(provision_id)
    if live is not None:
        if live == previous_run:
            # A second run of this same upgrade while the first is live: step aside.
            return {"provision_id": provision_id, "duplicate_of": live}
        raise ProvisionBusyError(f"provision {provision_id} is held by live run {live}")
    records.prepare_steps(provision_id, step_keys(upgrade_id))
    with runtime.db() as session:
        upgrade = session.get(Upgrade, upgrade_id)
        # Checked again under the claim: a payment reversal or a cancellation may have landed.
        refusal = _refusal(upgrade, upgrade_id)
        if refusal is not None:
            raise NotStartableError(refusal)
        assert upgrade is not None
        provision = upgrade.provision
        epoch = _claim_upgrade(session, upgrade_id)
        if epoch is None:
            raise NotStartableError(f"upgrade {upgrade_id} changed state while starting")
        guards.remember_upgrade_claim(upgrade_id, epoch, provision_id=provision.id)
        # A past-due account keeps saying so; the upgrade still adds what was paid for.
        session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.status == ProvisionStatus.ACTIVE.value,
            )
            .values(status=ProvisionStatus.UPGRADING.value)
            .execution_options(synchronize_session=False)
        )
        session.refresh(upgrade)
        session.refresh(provision)
        domains = [
            d
            for d in session.scalars(select(Domain).where(Domain.upgrade_id == upgrade_id))
            if d.purchase_state != PurchaseState.ABANDONED
        ]
        extra = upgrade.to_tier.domain_count - upgrade.from_tier.domain_count
        if len(domains) != extra:
            raise ProvisioningBlockedError(
                f"upgrade {upgrade_id} has {len(domains)} domains, {extra} needed",
                student_message="Your new domain selection is incomplete; our team will help you pick.",
                remedy="another_domain",
            )
        addresses = ensure_mailbox_rows(
            session, provision, domains, upgrade.to_tier.mailboxes_per_domain
        )
        return {
            "provision_id": provision_id,
            "domains": sorted(d.name for d in domains),
            "addresses": sorted(addresses),
        }


def _claim_upgrade(session: Any, upgrade_id: int) -> int | None:
    """Compare-and-set the upgrade to provisioning under this run, bumping its epoch."""
    me = str(flow_run.id) if flow_run.id else None
    won = session.execute(
        update(Upgrade)
        .where(Upgrade.id == upgrade_id, Upgrade.status.in_(RUNNABLE))
        .values(
            status=UpgradeStatus.PROVISIONING.value,
            status_reason=None,
            paid_at=func.coalesce(Upgrade.paid_at, utcnow()),
            flow_run_id=me if me else Upgrade.flow_run_id,
            run_epoch=Upgrade.run_epoch + 1,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        return None
    return int(session.scalar(select(Upgrade.run_epoch).where(Upgrade.id == upgrade_id)) or 0)


def _upgrade_epoch_is_ours(upgrade_id: int) -> list[Any]:
    mine = guards.claimed_upgrade_epoch(upgrade_id)
    return [] if mine is None else [Upgrade.run_epoch == mine]


@task(name="finish-upgrade", **vendor_task_options(None, retries=2))
def finish_upgrade(upgrade_id: int) -> dict[str, Any]:
    """Move the provision to the new tier, mark the upgrade done, publish the summary, notify.

    Compare-and-set on the upgrade (still provisioning under our epoch) and on the provision
    (not cancelled): a cancelled order or a superseded run changes nothing (StaleRunError).
    """
    provision_id = guards.ensure_upgrade_current(upgrade_id)
    with records.step(provision_id, upgrade_step_key(upgrade_id, "finish")):
        with runtime.db() as session:
            upgrade = session.get(Upgrade, upgrade_id)
            assert upgrade is not None
            if upgrade.status != UpgradeStatus.COMPLETED and not _complete(session, upgrade):
                raise guards.StaleRunError(
                    f"upgrade {upgrade_id} was cancelled or claimed by another run; "
                    "it is not completed"
                )
            session.refresh(upgrade)
            provision = upgrade.provision
            session.refresh(provision)
            session.flush()
            summary = summaries.upgrade_summary(upgrade)
            queued = notifications.queue_for_student(
                session,
                provision,
                key=f"upgrade-complete:{upgrade_id}",
                subject="Your upgrade is ready",
                body=f"Your {len(summary['domains'])} new domains and "
                f"{summary['mailbox_count']} new mailboxes are set up and warming up. "
                f"You are now on {summary['to_tier']}.",
            )
    notifications.deliver_quietly([queued])
    create_markdown_artifact(
        key=f"upgrade-{upgrade_id}",
        markdown=summaries.upgrade_markdown(summary),
        description=f"Upgrade {upgrade_id} of provision {provision_id}: what was added",
    )
    return {
        "upgrade_id": upgrade_id,
        "provision_id": provision_id,
        "status": "completed",
        "domains": [d["name"] for d in summary["domains"]],
    }


def _complete(session: Any, upgrade: Upgrade) -> bool:
    """The upgrade's and the provision's compare-and-sets, in one transaction; False if lost."""
    provision_id, to_tier = upgrade.provision_id, upgrade.to_tier_id
    tier_moved = session.execute(
        update(Provision)
        .where(
            Provision.id == provision_id,
            Provision.status.in_(UPGRADABLE),
            *guards.claim_is_current(provision_id),
        )
        .values(tier_id=to_tier, waiting_for=None, waiting_since=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if tier_moved != 1:
        return False
    done = session.execute(
        update(Upgrade)
        .where(
            Upgrade.id == upgrade.id,
            Upgrade.status == UpgradeStatus.PROVISIONING.value,
            *_upgrade_epoch_is_ours(upgrade.id),
        )
        .values(
            status=UpgradeStatus.COMPLETED.value,
            completed_at=func.coalesce(Upgrade.completed_at, utcnow()),
            status_reason=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        session.rollback()  # the tier moves only with the upgrade it belongs to
        return False
    session.execute(
        update(Provision)
        .where(Provision.id == provision_id, Provision.status == ProvisionStatus.UPGRADING.value)
        .values(status=ProvisionStatus.ACTIVE.value)
        .execution_options(synchronize_session=False)
    )
    return True


def mark_upgrade_failed(
    upgrade_id: int, exc: BaseException | None, reason: str, flow_run_id: str | None
) -> None:
    """Record an upgrade run's failure: the failing step, the provision usable again, a notice.

    The provision's domains and mailboxes keep working, so it goes back to active, unless
    another live run holds it (that run's story); a run refused before it started changes nothing.
    """
    if isinstance(exc, NotStartableError | guards.StaleRunError):
        # Nothing ran, or a cancellation / newer run owns the story: the rows are the truth.
        return
    with runtime.db() as session:
        upgrade = session.get(Upgrade, upgrade_id)
        if upgrade is None or upgrade.status in (
            UpgradeStatus.COMPLETED,
            UpgradeStatus.CANCELLED,
        ):
            return
        provision_id, holder = upgrade.provision_id, upgrade.provision.current_flow_run_id
    # Asked before the session below: no DB transaction waits on the Prefect API.
    other_live = holder not in (None, flow_run_id) and not run_is_final(holder)
    keys = step_keys(upgrade_id)
    step, message = records.stopped_at(provision_id, reason, keys, exc, "The upgrade stopped.")
    with runtime.db() as session:
        upgrade = session.get(Upgrade, upgrade_id)
        assert upgrade is not None
        values: dict[str, Any] = {
            "status": UpgradeStatus.FAILED.value,
            "status_reason": f"{step}: {message}",
        }
        if flow_run_id and (not other_live or upgrade.flow_run_id is None):
            values["flow_run_id"] = flow_run_id  # what the admin page's retry reschedules
        # Compare-and-set: a cancelled or completed upgrade, or a newer claim, is never overwritten.
        won = session.execute(
            update(Upgrade)
            .where(
                Upgrade.id == upgrade_id,
                Upgrade.status.in_(RUNNABLE),
                *_upgrade_epoch_is_ours(upgrade_id),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1 or other_live:
            return
        session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.status == ProvisionStatus.UPGRADING.value,
            )
            .values(status=ProvisionStatus.ACTIVE.value)
            .execution_options(synchronize_session=False)
        )
        provision = session.get(Provision, provision_id)
        assert provision is not None
        provision.waiting_for = provision.waiting_since = None
        queued = notifications.queue_failure(
            session,
            provision,
            key=f"upgrade-failed:{upgrade_id}:{flow_run_id}:{step}",
            student_subject="Your upgrade needs attention",
            student_body=f"{message} Your existing domains and mailboxes keep working; "
            "we will finish the upgrade and keep you posted.",
            admin_detail=f"Upgrade {upgrade_id} failed at {step}\nReason: {reason}",
        )
    # After the commit: the failure is recorded even if no email can go out now.
    notifications.deliver_quietly(queued)
