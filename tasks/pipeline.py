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
from sqlalchemy import select
from sqlalchemy import update

from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisionStatus
from core.models import PurchaseState
from core.models import UpgradeStatus
from core.pipeline import PROVISION_STEPS
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


class NotStartableError(Exception):
    """The provision is not in a state that may be provisioned (unpaid, cancelled)."""


def render_username(pattern: str, first: str, last: str) -> str:
    """Turn a username pattern such as ``{first}.{last}`` into a lower-case username."""
    first, last = first.strip().lower(), last.strip().lower()
    values = {"first": first, "last": last, "f": first[:1], "l": last[:1]}
    try:
        username = pattern.format(**values)
    except (KeyError, IndexError, ValueError):
        username = pattern
    return "".join(ch for ch in username.lower() if ch.isalnum() or ch in "._-")


def claim_provision(provision_id: int) -> str | None:
    """Make this run the provision's only live run; return the live run's id if another holds it.

    A compare-and-set on ``current_flow_run_id``: the claim succeeds when the field is empty,
    already ours (a retry of this run), or names a run that has finished. Two runs started at
    the same moment cannot both win, so a duplicate start never works on the same provision.
    """
    me = str(flow_run.id) if flow_run.id else None
    with runtime.db() as session:
        holder = session.scalar(
            select(Provision.current_flow_run_id).where(Provision.id == provision_id)
        )
    if holder and holder != me and not run_is_final(holder):
        return holder
    with runtime.db() as session:
        claimed = session.execute(
            update(Provision)
            .where(
                Provision.id == provision_id,
                Provision.current_flow_run_id.is_(None)
                if holder is None
                else Provision.current_flow_run_id == holder,
            )
            .values(current_flow_run_id=me)
        ).rowcount
    if claimed:
        return None
    with runtime.db() as session:
        return session.scalar(
            select(Provision.current_flow_run_id).where(Provision.id == provision_id)
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
            provision.status_reason = None
            provision.remedy = None
        if provision.status != ProvisionStatus.ACTIVE:
            provision.status = ProvisionStatus.PROVISIONING.value
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
    addresses = []
    for domain in domains:
        existing = {m.address for m in domain.mailboxes}
        for pattern in patterns:
            username = render_username(
                pattern, provision.sender_first_name, provision.sender_last_name
            )
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
    """Mark the provision active, publish the run's summary artifact, queue the notification."""
    with records.step(provision_id, step_key):
        with runtime.db() as session:
            provision = session.get(Provision, provision_id)
            assert provision is not None
            provision.status = ProvisionStatus.ACTIVE.value
            provision.activated_at = provision.activated_at or utcnow()
            provision.status_reason = provision.remedy = None
            provision.waiting_for = provision.waiting_since = None
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


def mark_provision_failed(provision_id: int, exc: BaseException | None, reason: str) -> None:
    """Record a run's failure for good: the failing step, plain words, and the remedy."""
    # Only this pipeline's steps: an upgrade's failed steps are that upgrade's story.
    failed_step = records.fail_running_steps(
        provision_id, reason, PROVISION_STEPS
    ) or records.first_failed_step(provision_id, PROVISION_STEPS)
    queued: list[str] = []
    with runtime.db() as session:
        provision = session.get(Provision, provision_id)
        if provision is None or provision.status == ProvisionStatus.CANCELLED:
            return
        if isinstance(exc, NotStartableError):
            return  # nothing ran: the provision's own status is already the truth
        provision.status = ProvisionStatus.FAILED.value
        message = (
            exc.student_message
            if isinstance(exc, ProvisioningBlockedError)
            else records.STEP_FAILURE.get(failed_step or "", "Setup stopped.")
        )
        provision.status_reason = f"{failed_step or 'setup'}: {message}"
        provision.remedy = exc.remedy if isinstance(exc, ProvisioningBlockedError) else None
        provision.waiting_for = provision.waiting_since = None
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
