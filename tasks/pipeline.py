"""Bookkeeping of a provisioning run: start (plan + status), finish (artifact), failure.

These touch only the app DB and Prefect; vendor work lives in the per-vendor task modules.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from core.db import utcnow
from core.mailboxes import MailboxNameError
from core.mailboxes import usernames_for
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import UpgradeStatus
from core.pipeline import PROVISION_STEPS
from tasks import guards
from tasks import notifications
from tasks import records
from tasks import runtime
from tasks.errors import ProvisioningBlockedError
from tasks.policies import vendor_task_options

# A run may (re)start only from these states; anything else means "not paid" or "cancelled".
STARTABLE = {
    ProvisionStatus.PROVISIONING.value,
    ProvisionStatus.FAILED.value,
    ProvisionStatus.ACTIVE.value,
}
# A lost compare-and-set on the claim means the holder changed; re-judge the new one this often.
CLAIM_ATTEMPTS = 5


class NotStartableError(Exception):
    """The provision is not in a state that may be provisioned (unpaid, cancelled)."""


def claim_provision(provision_id: int) -> str | None:
    """Make this run the provision's only live run; return the live run's id if another holds it.

    A compare-and-set on ``current_flow_run_id``: the claim succeeds when the field is empty,
    already names this run (a retry, or the outbox sender recording this very run's id between
    our read and our write), or names a run that has finished. Each won claim bumps
    ``run_epoch`` in the same UPDATE and is remembered in this process (tasks/guards.py), so
    every older run of the provision is fenced out of its mutating tasks.
    """
    me = str(flow_run.id) if flow_run.id else None
    # Bounded: each lost compare-and-set means the holder changed; re-judge the new one.
    for _ in range(CLAIM_ATTEMPTS):
        with runtime.db() as session:
            holder = session.scalar(
                select(Provision.current_flow_run_id).where(Provision.id == provision_id)
            )
        if holder and holder != me and not run_is_final(holder):
            return holder
        epoch = _take_claim(provision_id, holder, me)
        if epoch is not None:
            guards.remember_claim(provision_id, epoch)
            return None
    with runtime.db() as session:
        return session.scalar(
            select(Provision.current_flow_run_id).where(Provision.id == provision_id)
        )


def _take_claim(provision_id: int, holder: str | None, me: str | None) -> int | None:
    """Compare-and-set the holder to ``me`` and bump the epoch; the new epoch, or None if lost."""
    seen = (
        Provision.current_flow_run_id.is_(None)
        if holder is None
        else Provision.current_flow_run_id == holder
    )
    # "The holder is me" is success too, whoever wrote it.
    mine = seen if me is None else or_(seen, Provision.current_flow_run_id == me)
    with runtime.db() as session:
        won = session.execute(
            update(Provision)
            .where(Provision.id == provision_id, mine)
            .values(current_flow_run_id=me, run_epoch=Provision.run_epoch + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
        # Same transaction: the row is ours until the commit, so this is the epoch we set.
        return int(
            session.scalar(select(Provision.run_epoch).where(Provision.id == provision_id)) or 0
        )


def run_is_final(flow_run_id: str) -> bool:
    """Whether a flow run has ended (or is unknown to this server), so it holds nothing."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except (ObjectNotFound, ValueError):
        return True  # unknown to this server: nothing live can be holding the provision
    return state is None or state.is_final()


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


def tier_domains(provision: Provision) -> list[Domain]:
    """The domains the provision's current tier covers: its own and those of completed upgrades."""
    # An unpaid, running or failed upgrade's domains belong to that upgrade's run, not to this one.
    completed = {u.id for u in provision.upgrades if u.status == UpgradeStatus.COMPLETED}
    return [
        d
        for d in provision.domains
        if d.purchase_state != PurchaseState.ABANDONED
        and (d.upgrade_id is None or d.upgrade_id in completed)
    ]


def ensure_mailbox_rows(
    session: Any, provision: Provision, domains: list[Domain], per_domain: int
) -> list[str]:
    """Add the missing mailbox rows of ``domains`` (the sender-name patterns); return every address."""
    patterns = provision.username_patterns[:per_domain]
    try:
        # The wizard's own renderer (core/mailboxes.py): what was previewed is what is created.
        usernames = usernames_for(patterns, provision.sender_first_name, provision.sender_last_name)
    except MailboxNameError as exc:
        raise ProvisioningBlockedError(
            f"mailbox names of provision {provision.id}: {exc}",
            student_message=f"Your mailbox addresses cannot be created: {exc}",
            remedy="support",
        ) from exc
    addresses = []
    for domain in domains:
        existing = {m.address for m in domain.mailboxes}
        for username in usernames:
            address = f"{username}@{domain.name}"
            addresses.append(address)
            if address not in existing:
                session.add(
                    Mailbox(
                        domain=domain,
                        address=address,
                        username=username,
                        first_name=provision.sender_first_name,
                        last_name=provision.sender_last_name,
                    )
                )
    return addresses


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
            summary = summarize(provision)
            key = notifications.queue_for_student(
                session,
                provision,
                key=f"provision-active:{provision_id}",
                subject="Your outbound infrastructure is ready",
                body=f"Your {len(summary['domains'])} domains and {summary['mailbox_count']} "
                "mailboxes are set up and warming up.",
            )
    create_markdown_artifact(
        key=f"provision-{provision_id}",
        markdown=summary_markdown(summary),
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


def summarize(provision: Provision) -> dict[str, Any]:
    """Vendor ids and resources of a provision, with no secrets."""
    domains = [d for d in provision.domains if d.purchase_state == PurchaseState.PURCHASED]
    return {
        "provision_id": provision.id,
        "student": provision.user.email,
        "tier": provision.tier.name,
        "zapmail_workspace_id": provision.zapmail_workspace_id,
        "plusvibe_workspace_id": provision.plusvibe_workspace_id,
        "plusvibe_login": provision.plusvibe_client_email,
        "heyreach_list_id": provision.heyreach_list_id,
        "domains": domain_summaries(domains),
        "mailbox_count": sum(len(d.mailboxes) for d in domains),
    }


def domain_summaries(domains: list[Domain]) -> list[dict[str, Any]]:
    """Each domain's and mailbox's vendor ids and state, for run summaries (never a secret)."""
    return [
        {
            "name": d.name,
            "zapmail_id": d.zapmail_domain_id,
            "status": d.status,
            "dmarc": d.dmarc_email,
            "mailboxes": [
                {
                    "address": m.address,
                    "zapmail_id": m.zapmail_mailbox_id,
                    "plusvibe_id": m.plusvibe_account_id,
                    "warmup": m.warmup_enabled,
                }
                for m in d.mailboxes
            ],
        }
        for d in domains
    ]


def student_email(provision_id: int) -> str:
    """The provision's student, for run names; "unknown" when it cannot be read."""
    try:
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            return provision.user.email if provision else "unknown"
    except Exception:  # noqa: BLE001 - a run name must never stop a run
        return "unknown"


def summary_markdown(summary: dict[str, Any]) -> str:
    """Render a provision summary as the Prefect artifact's markdown."""
    lines = [
        f"# Provision {summary['provision_id']}: {summary['student']} ({summary['tier']})",
        "",
        f"- Zapmail workspace: `{summary['zapmail_workspace_id']}`",
        f"- PlusVibe workspace: `{summary['plusvibe_workspace_id']}`, "
        f"login `{summary['plusvibe_login']}` (password stored encrypted, not shown)",
        f"- HeyReach list: `{summary['heyreach_list_id']}`",
        "",
        *domain_table(summary["domains"]),
    ]
    return "\n".join(lines)


def domain_table(domains: list[dict[str, Any]]) -> list[str]:
    """Markdown table lines of ``domain_summaries``: one row per mailbox."""
    lines = [
        "| domain | Zapmail id | status | DMARC | mailbox | Zapmail id | PlusVibe id | warmup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for domain in domains:
        for box in domain["mailboxes"]:
            lines.append(
                f"| {domain['name']} | {domain['zapmail_id']} | {domain['status']} | "
                f"{domain['dmarc']} | {box['address']} | {box['zapmail_id']} | "
                f"{box['plusvibe_id']} | {'on' if box['warmup'] else 'off'} |"
            )
    return lines


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
        else records.STEP_FAILURE.get(failed_step or "", "Setup stopped.")
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
            student_body=f"{message} We will keep you posted.",
            admin_detail=f"Failed step: {failed_step or 'setup'}\nReason: {reason}\n"
            f"Error: {records.technical_detail(exc) if exc else 'none recorded'}",
        )
    # After the commit: the failure is recorded even if no email can go out now.
    notifications.deliver_quietly(queued)
